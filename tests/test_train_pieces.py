"""The pieces of the training engine, each against a computation by hand or in numpy:
the epoch plan and the rows of each call (mtl.train.plan), running means
(mtl.train.means), selection and early stopping (mtl.train.selection),
evaluation outputs (mtl.train.evaluation), checkpoints and signals
(mtl.train.guard), and the config -> fit glue (mtl.train.run)."""

import os
import signal

import jax
import numpy as np
import pytest

import mtl.data as md
import mtl.models as mm
from mtl.train import devices as dev
from mtl.train import evaluation
from mtl.train.epoch import train_record
from mtl.train.guard import RunGuard, TrainingInterrupted
from mtl.train.means import StepMeans
from mtl.train.plan import EpochPlan, TrainFeed, chunk_rows, epoch_order, gather_rows
from mtl.train.selection import apply_verdict, judge
from mtl.train.state import RunState, new_meta

# --- the epoch plan -------------------------------------------------------------------------------

@pytest.mark.parametrize("n, batch, per_call, sizes", [
    # 1000 rows of 128: 7 steps (104 rows dropped); calls of 3: 3 calls, the last with 2 padding steps
    (1000, 128, 3, dict(batch_size=128, steps=7, chunk=3, n_chunks=3, padding=2)),
    (1000, 128, 7, dict(batch_size=128, steps=7, chunk=7, n_chunks=1, padding=0)),
    (1000, 128, 100, dict(batch_size=128, steps=7, chunk=7, n_chunks=1, padding=0)),  # capped at the epoch
    (50, 128, 10, dict(batch_size=50, steps=1, chunk=1, n_chunks=1, padding=0)),  # batch capped at n
    (1024, 128, 3, dict(batch_size=128, steps=8, chunk=3, n_chunks=3, padding=1)),
])
def test_epoch_plan_counts(n, batch, per_call, sizes):
    plan = EpochPlan.make(n, batch, per_call)
    assert (plan.batch_size, plan.steps, plan.chunk, plan.n_chunks) == \
        (sizes["batch_size"], sizes["steps"], sizes["chunk"], sizes["n_chunks"])
    valid = plan.valid
    assert valid.shape == (sizes["n_chunks"], sizes["chunk"])
    assert valid.sum() == sizes["steps"]
    assert (~valid).sum() == sizes["padding"] and not valid[-1, valid.shape[1] - sizes["padding"]:].any()


def test_epoch_order_is_a_permutation_with_zero_padding():
    plan = EpochPlan.make(1000, 128, 3)
    order = np.asarray(epoch_order(plan, jax.random.key(3), 0))
    assert order.shape == (3, 3, 128)
    steps = order.reshape(9, 128)
    real = steps[:7].ravel()
    assert len(np.unique(real)) == 7 * 128 and real.min() >= 0 and real.max() < 1000  # no row twice
    np.testing.assert_array_equal(steps[7:], 0)
    other = np.asarray(epoch_order(plan, jax.random.key(3), 1)).reshape(9, 128)[:7]
    assert not np.array_equal(real, other.ravel())  # each epoch its own order


def test_k_batch_draw_starts_with_the_epoch_orders_batch():
    plan = EpochPlan.make(1000, 128, 3, k_batches=3)
    key = jax.random.key(5)
    order = epoch_order(plan, key, 2)
    rows = np.asarray(chunk_rows(plan, order[1], key, 2, 1))
    assert rows.shape == (3, 3, 128)  # (chunk, K, B)
    np.testing.assert_array_equal(rows[:, 0], np.asarray(order[1]))
    extra = rows[:, 1:]
    assert extra.min() >= 0 and extra.max() < 1000
    assert not np.array_equal(extra[:, 0], extra[:, 1])  # the extra batches are drawn, not copied
    one = np.asarray(chunk_rows(plan._replace(k_batches=1), order[1], key, 2, 1))
    np.testing.assert_array_equal(one, np.asarray(order[1])[:, None, :])


@pytest.mark.parametrize("vectorised", [False, True])
def test_gathered_rows_are_the_indexed_rows(vectorised):
    rng = np.random.default_rng(0)
    train = {"numeric": rng.normal(size=(40, 3))}
    rows = rng.integers(0, 40, size=(2, 4, 2, 5) if vectorised else (4, 2, 5))  # ([S,] chunk, K, B)
    block, positions = gather_rows(train, rows, vectorised)
    if vectorised:  # each seed its own rows of the same split
        for s in range(2):
            np.testing.assert_array_equal(block["numeric"][s][positions[s]], train["numeric"][rows[s]])
    else:
        np.testing.assert_array_equal(block["numeric"][positions], train["numeric"][rows])


def test_streamed_feed_sends_the_rows_of_the_epoch_order():
    rng = np.random.default_rng(1)
    train = {"numeric": rng.normal(size=(300, 4)).astype(np.float32), "categorical": np.zeros((300, 0), np.int32)}
    plan = EpochPlan.make(300, 32, 4, k_batches=2)
    mesh = dev.make_mesh(1)
    key = jax.random.key(0)
    order = np.asarray(epoch_order(plan, key, 1))
    memory = TrainFeed(plan, train, mesh, None, None)
    streamed = TrainFeed(plan, train, mesh, None, memory_budget=1000)
    assert not memory.streaming and streamed.streaming
    try:
        calls = list(streamed.calls(key, 1, start=1))
        assert [c for c, _, _ in calls] == [1, 2]  # 9 steps in 3 calls; resumed at call 1
        for (c, block, positions), (c2, full, rows) in zip(calls, list(memory.calls(key, 1))[1:]):
            assert c == c2 and full is memory.device
            rows = np.asarray(rows)
            np.testing.assert_array_equal(rows[:, 0], order[c])  # the order's batch first
            np.testing.assert_array_equal(np.asarray(block["numeric"])[positions], train["numeric"][rows])
    finally:
        streamed.close()


# --- running means --------------------------------------------------------------------------------

def test_step_means_average_only_counted_finite_steps():
    rng = np.random.default_rng(2)
    calls = []
    for _ in range(3):
        losses = rng.normal(size=(5, 2)).astype(np.float32)
        counted = rng.random(5) < 0.8
        finite = rng.random(5) < 0.7
        calls.append((losses, counted, finite))
    means = StepMeans()
    for losses, counted, finite in calls:
        means.add({"losses": losses}, counted, finite)
    all_losses = np.concatenate([c[0] for c in calls])
    counted = np.concatenate([c[1] for c in calls])
    finite = np.concatenate([c[2] for c in calls])
    np.testing.assert_allclose(means.means()["losses"], np.mean(all_losses[counted & finite], axis=0), rtol=1e-6)
    assert means.count == int((counted & finite).sum())
    assert means.skipped == int((counted & ~finite).sum())


def test_step_means_resume_from_their_json_state():
    a, b = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[5.0, 6.0]])
    ones = np.ones(2, bool)
    first = StepMeans()
    first.add({"losses": a}, ones, ones)
    state = {k: v for k, v in first.state.items()}  # what a checkpoint's JSON holds
    resumed = StepMeans(state)
    resumed.add({"losses": b}, np.ones(1, bool), np.ones(1, bool))
    np.testing.assert_array_equal(resumed.means()["losses"], [3.0, 4.0])


def test_train_record_names_the_task_pairs_of_the_cosines():
    means = StepMeans()
    cos = np.array([[1.0, 0.1, 0.2], [0.1, 1.0, 0.3], [0.2, 0.3, 1.0]])
    means.add({"losses": np.array([[1.0, 2.0, 3.0]]), "grad_norms": np.array([[4.0, 5.0, 6.0]]),
               "grad_cos": cos[None]}, np.array([True]), np.array([True]))
    r = train_record(3, 40, means, ["a", "b", "c"], seed=7)
    assert (r["epoch"], r["step"], r["seed"]) == (3, 40, 7)
    assert r["train_loss"] == {"a": 1.0, "b": 2.0, "c": 3.0} and r["grad_norms"] == {"a": 4.0, "b": 5.0, "c": 6.0}
    assert r["grad_cos"] == {"a|b": 0.1, "a|c": 0.2, "b|c": 0.3}
    assert "skipped_steps" not in r and np.isnan(r["weights"]["a"])


# --- selection and early stopping -----------------------------------------------------------------

def _drive(scores, patience):
    """(best epoch, stop epoch or None) of a scripted sequence of validation scores, via judge."""
    best_score, best_epoch, bad = -np.inf, -1, 0
    for epoch, score in enumerate(scores):
        v = judge(score, best_score, best_epoch, bad, patience)
        bad = v.bad_epochs
        if v.improved:
            best_score, best_epoch = score, epoch
        if v.stop:
            return best_epoch, epoch
    return best_epoch, None


@pytest.mark.parametrize("scores, patience, best, stop", [
    # improvements at 0, 1, 3; epochs 4 and 5 without: stop at 5 with patience 2
    ([0.5, 0.6, 0.55, 0.62, 0.61, 0.60, 0.7], 2, 3, 5),
    ([0.5, 0.6, 0.55, 0.62, 0.61, 0.60, 0.7], 3, 6, None),  # 0.7 at epoch 6 arrives in time
    ([0.5, 0.6, 0.55, 0.62, 0.61, 0.60, 0.7], 1, 1, 2),
    ([0.5, 0.4, 0.3, 0.2], 0, 0, None),  # patience 0: never stops
    ([0.5, 0.5, 0.5], 2, 0, 2),  # a tie is no improvement
    ([-np.inf, -np.inf], 5, 0, None),  # the first epoch is the best even at -inf
])
def test_best_and_stop_epochs_of_scripted_scores(scores, patience, best, stop):
    assert _drive(scores, patience) == (best, stop)


def _host_state(num_seeds):
    shape = (num_seeds,)
    return RunState(None, None, None, np.full(shape, -np.inf), np.full(shape, -1, np.int64),
                    np.zeros(shape, np.int64), np.zeros(shape, bool), np.zeros(shape, np.int64),
                    np.array(0, np.int64), np.array(0, np.int64))


def test_apply_verdict_keeps_each_seeds_best_metrics_and_stop_reason():
    scores = {0: [0.5, 0.7, 0.6, 0.65, 0.8], 1: [0.5, 0.4, 0.3, 0.9, 0.2]}
    state, meta = _host_state(2), new_meta(2)
    for epoch in range(5):
        for i in (0, 1):
            if state.stopped[i]:
                continue
            apply_verdict(state, meta, i, [10, 11], epoch, scores[i][epoch], {"validation": {"epoch": epoch}}, 2)
    # seed 0: best 1 (0.7), epochs 2 and 3 worse -> stopped after epoch 3; seed 1: best 0, stopped after 2
    assert list(state.best_epoch) == [1, 0] and list(state.stopped) == [True, True]
    assert list(state.best_score) == [0.7, 0.5]
    assert [m["validation"]["epoch"] for m in meta["best_eval"]] == [1, 0]
    assert meta["stop_reason"] == ["early stopping: no validation improvement for 2 epochs after the best epoch 1",
                                   "early stopping: no validation improvement for 2 epochs after the best epoch 0"]


# --- evaluation -----------------------------------------------------------------------------------

def test_outputs_per_split_are_the_models_outputs(monkeypatch):
    data = md.load("synthetic", num_train=300, num_validation=70, num_test=50, dim=6)
    model = mm.get("shared_bottom", num_tasks=2, num_numeric=6)
    params = [model.init(jax.random.key(s)) for s in (0, 1)]
    stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *params)
    monkeypatch.setattr(evaluation, "HOST_PIECE", 128)  # the streamed training split in 3 pieces
    names, kinds = evaluation.eval_heads(model, data)
    ev = evaluation.Evaluator(model, [data], False, names, kinds, ["validation", "test", "train"],
                              dev.make_mesh(1), 32, [0, 1], train_device=None)
    out = ev.outputs(stacked)
    for split in ("validation", "test", "train"):
        s = getattr(data, split)
        assert out[split].shape == (2, len(s), 2)
        for i in (0, 1):
            np.testing.assert_allclose(out[split][i], model.apply(params[i], s.numeric, s.categorical),
                                       rtol=1e-5, atol=1e-6)


# --- checkpoints and signals ----------------------------------------------------------------------

def _tiny_state():
    return RunState({"w": np.arange(3.0, dtype=np.float32)}, {"w": np.zeros(3, np.float32)}, jax.random.key(1),
                    np.array(-np.inf), np.array(-1), np.array(0), np.array(False), np.array(0),
                    np.array(0, np.int64), np.array(0, np.int64))


def _saved_steps(path):
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def test_checkpoints_every_k_epochs_and_after_the_last(tmp_path):
    guard = RunGuard(str(tmp_path), every=2, max_checkpoints=10)
    state, meta = _tiny_state(), new_meta(1)
    try:
        for epoch in range(1, 6):
            meta["global_step"] = 10 * epoch
            guard.after_epoch(state._replace(epoch=np.array(epoch, np.int64)), meta, epoch, last=epoch == 5)
    finally:
        guard.close()
    assert _saved_steps(tmp_path) == [20, 40, 50]
    resumed, seen = RunGuard(str(tmp_path)), []
    try:
        restored, meta2 = resumed.restore(_tiny_state(), new_meta(1), dev.make_mesh(1), seen.append)
    finally:
        resumed.close()
    assert int(restored.epoch) == 5 and meta2["global_step"] == 50 and seen == [meta2]
    np.testing.assert_array_equal(restored.train["w"], [0.0, 1.0, 2.0])


def test_a_signal_checkpoints_after_the_call_and_interrupts(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    guard = RunGuard(str(tmp_path), every=100, handle_signals=True)
    state, meta = _tiny_state(), new_meta(1)
    try:
        guard.after_call(state, meta, 0, more_calls=True)  # no signal yet: nothing happens
        assert _saved_steps(tmp_path) == []
        os.kill(os.getpid(), signal.SIGTERM)
        meta["global_step"] = 7
        try:
            guard.after_call(state, meta, 0, more_calls=False)  # the epoch's last call: the epoch end decides
        except TrainingInterrupted:
            pytest.fail("interrupted after the last call of an epoch, before its evaluation")
        with pytest.raises(TrainingInterrupted) as e:
            guard.after_call(state, meta, 0, more_calls=True)
    finally:
        guard.close()
    assert (e.value.signum, e.value.epoch, e.value.global_step) == (signal.SIGTERM, 0, 7)
    assert e.value.checkpoint == str(tmp_path.absolute()) and _saved_steps(tmp_path) == [7]
    assert signal.getsignal(signal.SIGTERM) is before


# --- from a config to fit -------------------------------------------------------------------------

def _resolved(**overrides):
    from experiments.configs.synthetic import get_config
    from mtl.config import resolve

    c = get_config("smoke")
    for k, v in overrides.items():
        setattr(c, k, v)
    return resolve(c)


def test_fit_options_from_the_config(tmp_path):
    from mtl.train.run import fit_options

    o = fit_options(_resolved(device_memory_budget_mb=3, checkpoint_every=2, seeds="3"), tmp_path)
    assert o["device_memory_budget"] == 3 * 1024 * 1024 and o["seed"] == [0, 1, 2]
    assert o["checkpoint_dir"] == str(tmp_path / "checkpoints") and o["checkpoint_every"] == 2
    o = fit_options(_resolved(checkpoint_every=0), tmp_path)  # 0: no checkpoints
    assert o["checkpoint_dir"] is None and o["device_memory_budget"] is None and o["seed"] == 0


def test_per_seed_data_is_drawn_with_each_seed():
    from mtl.config import seed_list
    from mtl.train.run import load_data

    config = _resolved(seeds="4,9", data_per_seed=True)
    name, data, datas = load_data(config, seed_list(config))
    assert name == "synthetic" and len(datas) == 2 and data is datas[0]
    for s, d in zip((4, 9), datas):
        direct = md.load("synthetic", correlation=0.5, num_train=2000, num_validation=500, num_test=500, seed=s)
        np.testing.assert_array_equal(d.train.numeric, direct.train.numeric)
    assert load_data(_resolved(seeds="4,9"), [4, 9])[2] is None  # one dataset unless data_per_seed


def test_selection_scales_are_training_label_variances_in_reported_units():
    """A standardised label enters the selection score as MSE / label_std**2; a log1p-transformed
    one as MSE (reported in the data's units) / the variance of its training labels in those units."""
    from mtl.data.base import MultiTaskData, Split, TaskSpec
    from mtl.train.selection import selection_scales

    seconds = np.array([0.5, 2.0, 4.0, 30.0, 300.0])  # heavy-tailed, like watch time
    logged = np.log1p(seconds)
    mean, std = float(logged.mean()), float(logged.std())
    stored = np.stack([(logged - mean) / std, np.array([0, 1, 0, 1, 1.0]), np.arange(5.0) / 2.0 - 1.0], axis=1)
    split = Split(np.zeros((5, 1), np.float32), np.zeros((5, 0), np.int32), stored.astype(np.float32))
    tasks = (TaskSpec("watch_s", "regression", mean, std, "log1p"), TaskSpec("click", "binary"),
             TaskSpec("ms", "regression", 10.0, 3.0))
    data = MultiTaskData(split, split, split, tasks, ("x",), (), (), {})
    scales = selection_scales(data)
    np.testing.assert_allclose(scales[0], np.var(seconds), rtol=1e-5)  # by hand: the seconds' variance
    assert scales[1] == 1.0 and scales[2] == 9.0


def test_seed_aggregate_is_mean_and_sample_std():
    """The aggregate summary of several seeds: mean and sample standard deviation (ddof 1), by hand."""
    from mtl.train.run import aggregate_summaries

    def summary(seed, auc, mse):
        metrics = {"click": {"auc": auc}, "watch": {"mse": mse}}
        return {"seed": seed, "validation": metrics, "test": metrics, "best_epoch": seed, "stop_reason": "cap",
                "train_seconds": 1.0, "step_seconds": 0.1, "num_params": 7}

    out = aggregate_summaries([summary(0, 0.70, 2.0), summary(1, 0.74, 4.0), summary(2, 0.72, 9.0)], {"model": "m"})
    assert out["test_mean"]["click"]["auc"] == pytest.approx(0.72)
    assert out["test_std"]["click"]["auc"] == pytest.approx(0.02)  # sqrt((0.02^2 + 0.02^2 + 0) / 2)
    assert out["test_std"]["watch"]["mse"] == pytest.approx(np.sqrt((3.0**2 + 1.0**2 + 4.0**2) / 2))
    assert out["seeds"] == [0, 1, 2] and out["best_epochs"] == [0, 1, 2] and out["model"] == "m"
