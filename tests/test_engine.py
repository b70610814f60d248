"""The training engine (mtl.train.fit): model selection, the data order, padded
calls, multi-batch draws, run facts, non-finite steps, vectorised seeds,
streaming, and reproducibility."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.balancers.base import Balancer, EmptyState, weighted_sum
from mtl.data.base import MultiTaskData, Split
from mtl.train import NonFiniteLossError, fit


@functools.cache
def _data(num_train=2000):
    return md.load("synthetic", correlation=0.9, num_train=num_train, num_validation=500, num_test=500)


@functools.cache
def _model(name="mmoe", **kw):
    return mm.get(name, num_tasks=2, num_numeric=100, **kw)


def _fit(balancer="ew", data=None, model=None, **kw):
    kw.setdefault("optimizer", optax.adam(3e-3))
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 128)
    kw.setdefault("progress", False)
    b = mb.get(balancer) if isinstance(balancer, str) else balancer
    return fit(model or _model(), b, data or _data(), **kw)


def _mean_mse(metrics):
    return float(np.mean([v["mse"] for v in metrics.values()]))


def test_learns_and_is_reproducible():
    data = _data(4000)
    var = float(data.train.labels.var(0).mean())
    runs = [_fit("pcgrad", data, epochs=6, seed=1, steps_per_call=25) for _ in range(2)]
    s = runs[0]
    assert _mean_mse(s["test"]) < 0.7 * var  # a linear fit leaves ~6/7 of the variance
    assert s["history"][-1]["train_loss"]["task1"] < s["history"][0]["train_loss"]["task1"]
    assert runs[0]["test"] == runs[1]["test"] and runs[0]["history"][-1]["train_loss"] == \
        runs[1]["history"][-1]["train_loss"]  # same config and seed, same numbers
    assert s["train_compilations"] == 1  # 6 epochs of 31 steps in calls of 25 (the last padded)


def _shifted_test_split(data):
    """A test split whose labels are the negated validation labels: the better a model
    fits validation, the worse it does on test, so the two optima are far apart."""
    v = data.validation
    return MultiTaskData(data.train, v, Split(v.numeric, v.categorical, -v.labels), data.tasks,
                         data.numeric_names, data.categorical_names, data.vocab_sizes, data.info)


def test_best_epoch_is_chosen_on_validation_never_on_test():
    data = _shifted_test_split(_data())
    s = _fit("ew", data, epochs=5)
    val = [_mean_mse(r["validation"]) for r in s["history"]]
    test = [_mean_mse(r["test"]) for r in s["history"]]
    assert int(np.argmin(val)) != int(np.argmin(test))  # the data makes the two choices differ
    assert s["best_epoch"] == int(np.argmin(val))
    assert s["test"] == s["history"][s["best_epoch"]]["test"]
    assert s["validation"] == s["history"][s["best_epoch"]]["validation"]


def test_early_stopping_stops_after_patience_and_says_why():
    s = _fit("ew", model=_model("shared_bottom"), optimizer=optax.adam(3e-2), epochs=30, batch_size=512, patience=2)
    val = [_mean_mse(r["validation"]) for r in s["history"]]
    assert s["best_epoch"] == int(np.argmin(val))
    assert s["epochs_run"] == len(s["history"]) < 30  # this learning rate overfits within a few epochs
    assert s["epochs_run"] - 1 - s["best_epoch"] == 2
    assert "early stopping" in s["stop_reason"] and f"best epoch {s['best_epoch']}" in s["stop_reason"]
    capped = _fit("ew", epochs=1)
    assert capped["stop_reason"] == "epoch cap reached (1 epochs)"


def test_padded_steps_of_the_last_call_are_not_applied():
    """15 steps in calls of 4 (one padded step per epoch) == 15 steps in one call."""
    a = _fit("ew", epochs=2, steps_per_call=4)
    b = _fit("ew", epochs=2, steps_per_call=15)
    assert int(a["state"].train.step) == int(b["state"].train.step) == 2 * (2000 // 128)
    leaves = jax.tree_util.tree_leaves
    for x, y in zip(leaves(a["state"].train.params), leaves(b["state"].train.params)):
        np.testing.assert_array_equal(x, y)


def test_every_epoch_draws_a_new_order():
    """With a zero learning rate per-step losses depend on the batches only."""
    steps = []
    _fit("ew", epochs=2, optimizer=optax.sgd(0.0), steps_per_call=5,
         on_steps=lambda epoch, first, outs: steps.append((epoch, outs["losses"])))
    per_epoch = [np.concatenate([o for e, o in steps if e == k]) for k in (0, 1)]
    assert per_epoch[0].shape == per_epoch[1].shape == (15, 2)
    assert not np.allclose(per_epoch[0], per_epoch[1])
    # the epoch means cover the same rows (all but the dropped partial batch)
    np.testing.assert_allclose(per_epoch[0].mean(0), per_epoch[1].mean(0), rtol=0.05)


def test_multi_batch_balancers_get_distinct_batches():
    """A K=3 balancer whose weights are the loss differences between the extra batches and the first."""

    def update(losses, task_grads, state, *, key=None):
        d = jnp.abs(losses[1] - losses[0]) + jnp.abs(losses[2] - losses[0])
        return weighted_sum(jax.tree_util.tree_map(lambda g: g[0], task_grads), jnp.ones(2)), d, state

    b = Balancer(lambda t: EmptyState(), update, grads="shared", num_batches=3, name="k3")
    s = _fit(b, epochs=1)
    assert np.all(np.array(list(s["history"][0]["weights"].values())) > 1e-3)


def test_fit_gives_balancers_the_run_facts():
    """DWA's weights stay 1 for two epochs of exactly steps_per_epoch steps, then move."""
    weights = []
    _fit("dwa", epochs=3, steps_per_call=5,
         on_steps=lambda epoch, first, outs: weights.append(outs["weights"]))
    w = np.concatenate(weights)
    spe = 2000 // 128
    assert w.shape == (3 * spe, 2)
    np.testing.assert_array_equal(w[: 2 * spe], 1.0)
    assert not np.allclose(w[2 * spe:], 1.0)


def test_nonfinite_loss_stops_naming_epoch_step_task_and_method():
    data = _data()
    steps = len(data.train) // 256
    opt = optax.sgd(optax.piecewise_constant_schedule(1e-3, {steps + 3: 1e30}))  # a sane epoch, then overflow
    records = []
    with pytest.raises(NonFiniteLossError, match=r"task 'task\d' .*at epoch 1, step \d+ .*balancer 'ew'") as e:
        _fit("ew", data, model=_model("shared_bottom"), optimizer=opt, epochs=5, batch_size=256,
             on_epoch=records.append)
    assert len(records) == 1 and records[0]["epoch"] == 0
    assert e.value.epoch == 1 and e.value.step >= 3
    # skipping instead: the bad steps are dropped and counted, the parameters stay finite
    s = _fit("ew", data, model=_model("shared_bottom"), optimizer=opt, epochs=2, batch_size=256,
             on_nonfinite="skip")
    assert s["skipped_steps"] > 0 and s["history"][1]["skipped_steps"] == s["skipped_steps"]
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(s["state"].train.params))


def test_vectorised_seeds_match_seeds_run_alone():
    """Seeds side by side in one program equal each seed alone (to float32 rounding of the
    vectorised matmuls), with early stopping per seed."""
    kw = dict(model=_model("shared_bottom"), optimizer=optax.adam(3e-2), epochs=8, batch_size=256, patience=1)
    together = _fit("pcgrad", seed=[3, 4], **kw)
    assert together["seeds"] == [3, 4]
    alone = [_fit("pcgrad", seed=s, **kw) for s in (3, 4)]
    assert together["runs"][0]["epochs_run"] != together["runs"][1]["epochs_run"]  # they stop at different epochs
    for v, a in zip(together["runs"], alone):
        assert v["best_epoch"] == a["best_epoch"] and v["epochs_run"] == a["epochs_run"]
        for split in ("validation", "test"):
            for task in a[split]:
                for m, x in a[split][task].items():
                    assert v[split][task][m] == pytest.approx(x, rel=1e-4, abs=1e-6), (split, task, m)
        for x, y in zip(jax.tree_util.tree_leaves(v["params"]), jax.tree_util.tree_leaves(a["params"])):
            np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


def test_streamed_training_split_gives_the_in_memory_results():
    kw = dict(epochs=2, steps_per_call=4, seed=2)
    memory = _fit("mgda", **kw)
    streamed = _fit("mgda", device_memory_budget=10_000, **kw)  # the split is ~0.8 MB
    assert streamed["history"] == memory["history"] or all(
        {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
        for a, b in zip(streamed["history"], memory["history"]))
    for x, y in zip(jax.tree_util.tree_leaves(streamed["state"].train.params),
                    jax.tree_util.tree_leaves(memory["state"].train.params)):
        np.testing.assert_array_equal(x, y)


def test_selection_score_weighs_standardised_regression_tasks_alike():
    """Model selection compares MSEs in training units: a target in milliseconds does not drown the others."""
    from mtl.train.loop import selection_score

    val = {"click": {"logloss": 0.4, "auc": 0.7}, "watch_ms": {"mse": 4.0e6}, "rating": {"mse": 0.5}}
    kinds, names = ("binary", "regression", "regression"), ("click", "watch_ms", "rating")
    assert selection_score(val, kinds, names, "loss", [1.0, 1.0e6, 1.0]) == pytest.approx(-(0.4 + 4.0 + 0.5) / 3)
    assert selection_score(val, kinds, names, "loss") == pytest.approx(-(0.4 + 4.0e6 + 0.5) / 3)
    assert selection_score(val, kinds, names, "auc") == pytest.approx(0.7)
