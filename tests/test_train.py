import json
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.balancers.base import Balancer, EmptyState, weighted_sum
from mtl.train import NonFiniteLossError, fit, init_train_state, make_train_step, task_losses

from conftest import ROOT

KINDS = ("binary", "regression")


def _setup(name="mmoe", t=2, seed=0, **kw):
    m = mm.get(name, num_tasks=t, num_numeric=4, vocab_sizes=(3, 5), embed_dim=2, **kw)
    rng = np.random.default_rng(seed)
    batch = {"numeric": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32),
             "categorical": jnp.asarray(np.stack([rng.integers(0, 3, 16), rng.integers(0, 5, 16)], 1), jnp.int32),
             "labels": jnp.asarray(np.stack([rng.integers(0, 2, 16), rng.normal(size=16)], 1)[:, :t], jnp.float32)}
    return m, batch


def _sum_balancer(num_batches=1, grads="shared"):
    """A gradient-based balancer that returns the plain sum: must equal EW."""

    def update(losses, task_grads, state, *, key=None):
        lead = losses.shape[-1]
        tg = jax.tree_util.tree_map(lambda g: g[0], task_grads) if num_batches > 1 else task_grads
        return weighted_sum(tg, jnp.ones(lead)), jnp.ones(lead), state

    return Balancer(lambda t: EmptyState(), update, grads=grads, num_batches=num_batches, name="sum")


def _one_step_params(m, balancer, batch, **kw):
    opt = optax.sgd(0.1)
    step = jax.jit(make_train_step(m, balancer, opt, KINDS[: m.num_tasks], **kw))
    state = init_train_state(m, balancer, opt, jax.random.key(0))
    new, out = step(state, batch)
    return state, new, out, step


@pytest.mark.parametrize("name", ["shared_bottom", "omoe", "mmoe", "cgc", "ple"])
@pytest.mark.parametrize("rep_grad", [False, True])
def test_per_task_gradient_paths_equal_the_summed_gradient(name, rep_grad):
    m, batch = _setup(name)
    s0, ew_state, _, _ = _one_step_params(m, mb.get("ew"), batch)
    _, sum_state, out, step = _one_step_params(m, _sum_balancer(), batch, rep_grad=rep_grad)
    for a, b in zip(jax.tree_util.tree_leaves(ew_state.params), jax.tree_util.tree_leaves(sum_state.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    # and the update is not trivial
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(s0.params),
                                                     jax.tree_util.tree_leaves(sum_state.params)))
    step(sum_state, batch)
    assert step._cache_size() == 1  # no recompilation on the second call


def test_balancer_sees_only_the_balanced_parameters():
    seen = {}

    def update(losses, task_grads, state, *, key=None):
        seen["tree"] = jax.tree_util.tree_structure(task_grads)
        seen["leaves"] = [g.shape for g in jax.tree_util.tree_leaves(task_grads)]
        return weighted_sum(task_grads, jnp.ones(2)), jnp.ones(2), state

    b = Balancer(lambda t: EmptyState(), update, grads="shared", name="spy")
    m, batch = _setup("mmoe")
    params = m.init(jax.random.key(0))
    opt = optax.sgd(0.1)
    for emb in (False, True):
        make_train_step(m, b, opt, KINDS, balance_embeddings=emb)(init_train_state(m, b, opt, jax.random.key(0)), batch)
        n_shared = len(jax.tree_util.tree_leaves(params["shared"]))
        assert len(seen["leaves"]) == n_shared + emb
        assert all(s[0] == 2 for s in seen["leaves"])  # leading task axis


def test_loss_weights_are_applied():
    class W(NamedTuple):
        pass

    def update(losses, task_grads, state, *, key=None):
        return None, jnp.array([2.0, 0.0]), state

    b = Balancer(lambda t: W(), update, grads="none", name="w")
    m, batch = _setup("shared_bottom")
    opt = optax.sgd(0.1)
    state = init_train_state(m, b, opt, jax.random.key(0))
    new, _ = make_train_step(m, b, opt, KINDS)(state, batch)
    g = jax.grad(lambda p: 2.0 * task_losses(m.apply(p, batch["numeric"], batch["categorical"], train=True,
                                                             key=jax.random.split(jax.random.split(state.key, 3)[1])[0]),
                                                     batch["labels"], KINDS)[0])(state.params)
    # the task-1 tower is untouched (weight 0); the rest follows 2 * grad L_0
    np.testing.assert_allclose(new.params["heads"]["towers"][0]["w"][1], state.params["heads"]["towers"][0]["w"][1])
    expected = jax.tree_util.tree_map(lambda p, gr: p - 0.1 * gr, state.params, g)
    for a, b_ in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(new.params)):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)


def test_multi_batch_balancers_get_k_batches():
    m, batch = _setup("mmoe")
    got = {}

    def update(losses, task_grads, state, *, key=None):
        got["losses"] = losses.shape
        got["grads"] = jax.tree_util.tree_leaves(task_grads)[0].shape
        return weighted_sum(jax.tree_util.tree_map(lambda g: g[0], task_grads), jnp.ones(2)), jnp.ones(2), state

    b = Balancer(lambda t: EmptyState(), update, grads="shared", num_batches=3, name="k3")
    opt = optax.sgd(0.1)
    kb = jax.tree_util.tree_map(lambda x: jnp.stack([x, x, x]), batch)
    make_train_step(m, b, opt, KINDS)(init_train_state(m, b, opt, jax.random.key(0)), kb)
    assert got["losses"] == (3, 2) and got["grads"][:2] == (3, 2)


def test_after_update_hook_receives_losses_on_the_updated_parameters():
    class S(NamedTuple):
        after: jax.Array

    def update(losses, task_grads, state, *, key=None):
        return None, jnp.ones(2), state

    b = Balancer(lambda t: S(jnp.zeros(t)), update, grads="none",
                 after_update=lambda s, before, after: S(after), name="hook")
    m, batch = _setup("shared_bottom")  # no dropout: forward passes deterministic
    opt = optax.sgd(0.1)
    new, out = jax.jit(make_train_step(m, b, opt, KINDS))(init_train_state(m, b, opt, jax.random.key(0)), batch)
    expected = task_losses(m.apply(new.params, batch["numeric"], batch["categorical"]), batch["labels"], KINDS)
    np.testing.assert_allclose(new.balancer_state.after, expected, rtol=1e-5)
    assert not np.allclose(expected, out["losses"])


def test_mismatched_task_counts_and_bad_rep_grad():
    m, _ = _setup("mmoe", t=2)
    with pytest.raises(ValueError, match="2 tasks but the data has 3"):
        make_train_step(m, mb.get("ew"), optax.sgd(0.1), ("binary",) * 3)
    with pytest.raises(ValueError, match="gradnorm.*rep_grad"):
        make_train_step(m, mb.get("gradnorm"), optax.sgd(0.1), KINDS, rep_grad=True)
    st = mm.get("single_task", num_tasks=2, num_numeric=4)
    with pytest.raises(ValueError, match="no shared parameters"):
        b = mb.get("pcgrad")
        opt = optax.sgd(0.1)
        make_train_step(st, b, opt, KINDS)(init_train_state(st, b, opt, jax.random.key(0)),
                                          {"numeric": jnp.ones((4, 4)), "categorical": jnp.zeros((4, 0), jnp.int32),
                                           "labels": jnp.ones((4, 2))})


def test_diagnostics_cosines_and_norms():
    m, batch = _setup("mmoe")
    _, _, out, _ = _one_step_params(m, mb.get("ew"), batch, diagnostics=True)
    cos = np.asarray(out["grad_cos"])
    np.testing.assert_allclose(np.diag(cos), 1.0, rtol=1e-5)
    np.testing.assert_allclose(cos, cos.T, rtol=1e-6)
    assert np.all(np.asarray(out["grad_norms"]) > 0)


def _small_synthetic(**kw):
    return md.load("synthetic", correlation=0.9, num_train=8000, num_validation=1000, num_test=1000, **kw)


def test_end_to_end_reaches_loss_threshold_and_is_reproducible():
    data = _small_synthetic()
    var = float(data.train.labels.var(0).mean())
    m = mm.get("mmoe", num_tasks=2, num_numeric=100)
    runs = [fit(m, mb.get("pcgrad"), data, optimizer=optax.adam(3e-3), epochs=8, batch_size=128, seed=1,
                steps_per_call=25, progress=False) for _ in range(2)]
    s = runs[0]
    test_mse = np.mean([v["mse"] for v in s["test"].values()])
    assert test_mse < 0.7 * var, (test_mse, var)  # a linear fit leaves ~6/7 of the variance
    assert s["history"][-1]["train_loss"]["task1"] < s["history"][0]["train_loss"]["task1"]
    assert runs[0]["test"] == runs[1]["test"]  # same config and seed, same numbers
    assert s["train_compilations"] == 1  # 8 epochs of 62 steps in calls of 25 (the last padded): one compilation
    assert 0 <= s["best_epoch"] < 8


def test_early_stopping_reports_best_validation_epoch():
    data = _small_synthetic()
    m = mm.get("shared_bottom", num_tasks=2, num_numeric=100)
    s = fit(m, mb.get("ew"), data, optimizer=optax.adam(3e-2), epochs=30, batch_size=512, patience=2, progress=False)
    val = [np.mean([v["mse"] for v in r["validation"].values()]) for r in s["history"]]
    assert s["best_epoch"] == int(np.argmin(val))
    assert s["epochs_run"] == len(s["history"]) < 30  # this learning rate overfits within a few epochs
    assert s["epochs_run"] - 1 - s["best_epoch"] == 2  # stopped after `patience` epochs without improvement


def test_nan_loss_stops_with_epoch_step_task_and_keeps_metrics():
    data = _small_synthetic()
    steps = len(data.train) // 256
    m = mm.get("shared_bottom", num_tasks=2, num_numeric=100)
    # a sane first epoch, then an absurd learning rate that overflows
    opt = optax.sgd(optax.piecewise_constant_schedule(1e-3, {steps + 3: 1e30}))
    records = []
    with pytest.raises(NonFiniteLossError, match=r"task 'task\d' at epoch 1, step \d+") as e:
        fit(m, mb.get("ew"), data, optimizer=opt, epochs=5, batch_size=256, on_epoch=records.append, progress=False)
    assert len(records) == 1 and records[0]["epoch"] == 0
    assert e.value.epoch == 1 and e.value.step >= 3


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mtl.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_writes_config_metrics_summary(tmp_path):
    r = _cli("--config=experiments/configs/synthetic.py:smoke", f"--workdir={tmp_path}", "--config.model.name=ple",
             "--config.balancer.name=pcgrad", "--config.epochs=2", "--config.seed=1", "--noprogress")
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"]["name"] == "ple" and cfg["seed"] == 1
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1]
    assert set(lines[0]["weights"]) == {"task1", "task2"} and "mse" in lines[0]["test"]["task1"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"best_epoch", "validation", "test", "train_seconds"} <= set(summary)
    assert summary["model"] == "ple" and summary["balancer"] == "pcgrad"
    assert "best epoch" in r.stdout


@pytest.mark.parametrize("key,value,message", [
    ("model.name", "mmeo", "unknown model 'mmeo'.*mmoe"),
    ("balancer.name", "pcgard", "unknown balancer 'pcgard'.*pcgrad"),
])
def test_cli_unknown_names_list_choices(tmp_path, key, value, message):
    r = _cli("--config=experiments/configs/synthetic.py:smoke", f"--workdir={tmp_path}", f"--config.{key}={value}")
    assert r.returncode == 2
    import re
    assert re.search(message, r.stderr), r.stderr[-2000:]


def test_cli_step_diagnostics(tmp_path):
    r = _cli("--config=experiments/configs/synthetic.py:smoke", f"--workdir={tmp_path}", "--config.epochs=1",
             "--config.balancer.name=pcgrad", "--config.diagnostics=step", "--noprogress")
    assert r.returncode == 0, r.stderr[-3000:]
    steps = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == 2000 // 128 and steps[0]["step"] == 0
    assert -1.0 <= steps[0]["grad_cos"]["task1|task2"] <= 1.0 and steps[0]["grad_norms"]["task1"] > 0
    epoch = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    mean_cos = np.mean([s["grad_cos"]["task1|task2"] for s in steps])
    assert epoch["grad_cos"]["task1|task2"] == pytest.approx(mean_cos, rel=1e-4, abs=1e-6)


def test_weight_heads_scales_task_specific_gradients():
    def update(losses, task_grads, state, *, key=None):
        w = jnp.array([2.0, 0.5])
        return weighted_sum(task_grads, w), w, state

    b = Balancer(lambda t: EmptyState(), update, grads="shared", name="fixed")
    m, batch = _setup("shared_bottom")
    opt = optax.sgd(1.0)
    s0 = init_train_state(m, b, opt, jax.random.key(0))
    plain, _ = make_train_step(m, b, opt, KINDS)(s0, batch)
    weighted, _ = make_train_step(m, b, opt, KINDS, weight_heads=True)(s0, batch)
    tower = lambda s: np.asarray(s.params["heads"]["towers"][0]["w"])
    d_plain, d_weighted = tower(s0) - tower(plain), tower(s0) - tower(weighted)
    np.testing.assert_allclose(d_weighted[0], 2.0 * d_plain[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d_weighted[1], 0.5 * d_plain[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(plain.params["shared"]["bottom"][0]["w"]),
                               np.asarray(weighted.params["shared"]["bottom"][0]["w"]), rtol=1e-6)
