"""The training engine (mtl.train.fit) pinned against independent computations: early
stopping and model selection recomputed by hand from the per-epoch records, test F1 at the
validation threshold with scikit-learn, regression metrics in original units with numpy,
non-finite gradients, per-step randomness, the seed list, and resuming from an older checkpoint."""

import functools
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from sklearn import metrics as skm

import mtl.balancers as mb
import mtl.models as mm
from mtl.config import seed_list
from mtl.data import MultiTaskData, Split, TaskSpec
from mtl.models.base import Model
from mtl.train import NonFiniteLossError, fit

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _split(rng, n, w, kinds, ms_mean, ms_std):
    num = rng.normal(size=(n, 4)).astype(np.float32)
    cat = rng.integers(0, 3, (n, 1))
    signal = num @ w + 0.5 * (cat[:, :1] == 1)
    cols = []
    for t, kind in enumerate(kinds):
        s = signal[:, t] + rng.normal(scale=1.0, size=n)
        cols.append((s > 0).astype(np.float32) if kind == "binary" else ms_mean + ms_std * s)
    return num, cat, np.stack(cols, 1)


@functools.cache
def _data(kinds=("binary", "binary"), n=(400, 80, 200), seed=0, ms_mean=5000.0, ms_std=800.0):
    """Two tasks from a linear signal; a regression task is in "milliseconds" (mean 5000,
    std ~1000), stored standardised with the training split's statistics."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, len(kinds)))
    raw = [_split(rng, k, w, kinds, ms_mean, ms_std) for k in n]
    reg = [t for t, k in enumerate(kinds) if k == "regression"]
    mean = {t: float(raw[0][2][:, t].mean()) for t in reg}
    std = {t: float(raw[0][2][:, t].std()) for t in reg}
    splits = []
    for num, cat, y in raw:
        y = y.copy()
        for t in reg:
            y[:, t] = (y[:, t] - mean[t]) / std[t]
        splits.append(Split(num, cat, y))
    names = ("click", "watch_ms") if kinds == ("binary", "regression") else tuple(f"t{i}" for i in range(len(kinds)))
    tasks = tuple(TaskSpec(nm, k, mean.get(t, 0.0), std.get(t, 1.0)) for t, (nm, k) in enumerate(zip(names, kinds)))
    return MultiTaskData(*splits, tasks, tuple(f"x{i}" for i in range(4)), ("c0",), (3,), {"protocol": "test"})


@functools.cache
def _model(name="shared_bottom", **kw):
    kw = {"bottom_hidden": (8,), "tower_hidden": (4,), **kw}
    return mm.get(name, num_tasks=2, num_numeric=4, vocab_sizes=(3,), embed_dim=2, **kw)


def _fit(balancer="ew", data=None, model=None, **kw):
    kw.setdefault("optimizer", optax.adam(1e-2))
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 50)
    kw.setdefault("progress", False)
    b = mb.get(balancer) if isinstance(balancer, str) else balancer
    return fit(model or _model(), b, data or _data(), **kw)


def _predict(model, params, split):
    return np.asarray(jax.jit(model.apply)(params, split.numeric, split.categorical), np.float64)


# --- early stopping of vectorised seeds -----------------------------------------------------------


def _stop_by_hand(scores, patience):
    """(best epoch, epochs run): stop at the first epoch where `patience` epochs passed without a
    strictly higher score than the best so far."""
    best, best_epoch = -np.inf, -1
    for e, s in enumerate(scores):
        if s > best:
            best, best_epoch = s, e
        elif e - best_epoch >= patience:
            return best_epoch, e + 1
    return best_epoch, len(scores)


def test_vectorised_seeds_stop_early_each_on_its_own():
    kw = dict(optimizer=optax.adam(5e-2), epochs=12, patience=2, data=_data(n=(400, 60, 60)))
    together = _fit("ew", seed=[0, 1, 2], **kw)
    runs = together["runs"]
    for r in runs:  # the rule, by hand, from the seed's own validation AUCs (every task binary)
        scores = [np.mean([rec["validation"][t]["auc"] for t in ("t0", "t1")]) for rec in r["history"]]
        assert (r["best_epoch"], r["epochs_run"]) == _stop_by_hand(scores, 2)
        assert r["epochs_run"] == len(r["history"])
    assert len({r["epochs_run"] for r in runs}) > 1 and min(r["epochs_run"] for r in runs) < 12
    for r in runs:  # and each equals the seed trained alone (a different code path: no vmap)
        alone = _fit("ew", seed=r["seed"], **kw)
        assert (alone["best_epoch"], alone["epochs_run"]) == (r["best_epoch"], r["epochs_run"])


# --- selection on standardised units, thresholds, original units ----------------------------------


@functools.cache
def _mixed_run():
    data = _data(kinds=("binary", "regression"), n=(400, 100, 200), seed=5)
    return data, _fit("ew", data, optimizer=optax.adam(3e-2), epochs=6)


def test_selection_uses_mse_in_standardised_units():
    data, s = _mixed_run()
    var = data.tasks[1].label_std ** 2
    hist = s["history"]
    standardised = [-(r["validation"]["click"]["logloss"] + r["validation"]["watch_ms"]["mse"] / var) / 2
                    for r in hist]
    raw = [-(r["validation"]["click"]["logloss"] + r["validation"]["watch_ms"]["mse"]) / 2 for r in hist]
    assert int(np.argmax(standardised)) != int(np.argmax(raw))  # the data makes the two rules disagree
    assert s["best_epoch"] == int(np.argmax(standardised))
    assert s["test"] == hist[s["best_epoch"]]["test"]


def test_test_f1_uses_the_validation_threshold():
    data, s = _mixed_run()
    thr = s["validation"]["click"]["threshold"]
    # the validation threshold is F1-optimal on validation (sklearn, every distinct logit as a candidate)
    val = _predict(_model(), s["params"], data.validation)[:, 0]
    yv = data.validation.labels[:, 0]
    best = max(skm.f1_score(yv, val >= c) for c in np.unique(val))
    assert skm.f1_score(yv, val >= thr) == pytest.approx(best)
    # test precision/recall/F1 at that threshold
    out = _predict(_model(), s["params"], data.test)[:, 0]
    y = data.test.labels[:, 0]
    pred = out >= thr
    assert s["test"]["click"]["threshold"] == thr
    assert s["test"]["click"]["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert s["test"]["click"]["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert s["test"]["click"]["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    retuned = max(skm.f1_score(y, out >= c) for c in np.unique(out))
    assert retuned > skm.f1_score(y, pred) + 1e-6  # a threshold re-chosen on test would report more


def test_regression_metrics_are_in_original_units():
    data, s = _mixed_run()
    t = data.tasks[1]
    assert (t.label_mean, t.label_std) != (0.0, 1.0) and t.label_mean > 1000
    pred = t.label_mean + t.label_std * _predict(_model(), s["params"], data.test)[:, 1]
    y = t.label_mean + t.label_std * data.test.labels[:, 1].astype(np.float64)
    assert s["test"]["watch_ms"]["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-4)
    assert s["test"]["watch_ms"]["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-4)


# --- non-finite gradients with finite losses, through fit -----------------------------------------


@jax.custom_vjp
def _nan_cotangent(x):
    return x


_nan_cotangent.defvjp(lambda x: (x, None), lambda _, g: (jnp.where(g != 0, jnp.nan, g),))  # NaN where used


def _nan_gradient_model():
    """Linear 2-task model; rows whose last numeric feature is > 3 give the shared layer a NaN
    gradient while every output and loss stays finite."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"embed": {}, "shared": {"w": 0.3 * jax.random.normal(k1, (4, 3))},
                "heads": {"v": 0.3 * jax.random.normal(k2, (3, 2))}}

    def encode(p, h, *, train=False, key=None):
        z = h @ p["w"]
        return jnp.where(h[:, -1:] > 3.0, _nan_cotangent(z), z)

    return Model(init=init, embed=lambda p, num, cat: num, encode=encode,
                 decode=lambda p, z, h, *, train=False, key=None: z @ p["v"], last_shared=None, num_tasks=2,
                 name="nan_gradient")


@functools.cache
def _marked_data():
    """Regression data; 4 training rows are marked (feature 3 = 5, label 40: a loss above 10 shows the
    batch has one)."""
    d = _data(kinds=("regression", "regression"), n=(400, 50, 50), seed=5)
    num, y = d.train.numeric.copy(), d.train.labels.copy()
    num[:, 3] = np.clip(num[:, 3], -2.5, 2.5)
    marked = [7, 100, 222, 333]
    num[marked, 3], y[marked] = 5.0, 40.0
    return MultiTaskData(Split(num, d.train.categorical, y), d.validation, d.test, d.tasks, d.numeric_names,
                         d.categorical_names, d.vocab_sizes, d.info)


def test_fit_skips_or_stops_on_a_nan_gradient_with_finite_losses():
    data = _marked_data()
    steps = []
    s = _fit("ew", data, model=_nan_gradient_model(), optimizer=optax.sgd(1e-2), epochs=2, batch_size=40,
             on_nonfinite="skip", on_steps=lambda e, first, outs: steps.append(outs["losses"]))
    losses = np.concatenate(steps)
    assert np.all(np.isfinite(losses))
    bad = int((losses.max(1) > 10.0).sum())  # the steps whose batch holds a marked row, by hand
    assert bad > 0 and s["skipped_steps"] == bad
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(s["state"].train.params))
    with pytest.raises(NonFiniteLossError, match="gradient or balancer output") as e:
        _fit("ew", data, model=_nan_gradient_model(), optimizer=optax.sgd(1e-2), epochs=2, batch_size=40)
    assert e.value.what == "gradient or balancer output"


# --- randomness advances every step, per seed -----------------------------------------------------


def test_random_weights_change_every_step_and_repeat_for_a_seed():
    def weights_of(seed):
        w = []
        _fit("rlw", seed=seed, epochs=1, steps_per_call=3, on_steps=lambda e, f, outs: w.append(outs["weights"]))
        return np.concatenate(w)

    a, b, c = weights_of(0), weights_of(0), weights_of(1)
    assert a.shape == (8, 2) and len({row.tobytes() for row in a}) == 8  # a new draw at every step
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# --- seeds=N with seed=s ----------------------------------------------------------------------------


def test_seeds_count_trains_seed_to_seed_plus_n_minus_one_as_the_readme_says():
    assert "seeds `seed`, `seed + 1`, …, `seed + N − 1`" in README.read_text()
    assert seed_list(ml_collections.ConfigDict({"seed": 3, "seeds": 4})) == [3, 4, 5, 6]
    assert seed_list(ml_collections.ConfigDict({"seed": 3, "seeds": "7,1"})) == [7, 1]
    assert seed_list(ml_collections.ConfigDict({"seed": 3, "seeds": ""})) is None


# --- resuming from a kept checkpoint older than the latest ------------------------------------------


def _without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_resume_from_an_older_checkpoint_is_bit_identical(tmp_path):
    kw = dict(epochs=4, steps_per_call=3, seed=5, balancer="rlw", optimizer=optax.adam(0.1), max_checkpoints=4)
    straight = _fit(**kw)
    assert straight["best_epoch"] == 1  # the best parameters after resuming come from the checkpoint
    ckpt = tmp_path / "ckpt"
    _fit(checkpoint_dir=str(ckpt), **kw)
    kept = sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
    assert len(kept) == 4  # one per epoch
    for step in kept[2:]:  # the newest kept is now the end of epoch 1: two epochs are trained again
        shutil.rmtree(ckpt / str(step))
    resumed = _fit(checkpoint_dir=str(ckpt), **kw)
    assert _without_seconds(resumed["history"]) == _without_seconds(straight["history"])
    assert resumed["best_epoch"] == straight["best_epoch"] and resumed["test"] == straight["test"]
    for x, y in zip(jax.tree_util.tree_leaves(resumed["params"]), jax.tree_util.tree_leaves(straight["params"])):
        np.testing.assert_array_equal(x, y)
    leaves = jax.tree_util.tree_leaves
    for x, y in zip(leaves(resumed["state"].train), leaves(straight["state"].train), strict=True):
        np.testing.assert_array_equal(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
                                      jax.random.key_data(y) if jnp.issubdtype(y.dtype, jax.dtypes.prng_key) else y)
