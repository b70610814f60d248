"""The jitted train step: gradient paths, the balanced set, loss weights, K batches, hooks,
weight_heads and in-program detection of non-finite steps."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.models as mm
from mtl.balancers.base import Balancer, EmptyState, weighted_sum
from mtl.train import init_train_state, make_train_step, task_losses

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
    key = jax.random.split(jax.random.split(state.key, 3)[1])[0]
    g = jax.grad(lambda p: 2.0 * task_losses(m.apply(p, batch["numeric"], batch["categorical"], train=True, key=key),
                                             batch["labels"], KINDS)[0])(state.params)
    # the task-1 tower is untouched (weight 0); the rest follows 2 * grad L_0
    np.testing.assert_allclose(new.params["heads"]["towers"]["last"]["kernel"][1],
                               state.params["heads"]["towers"]["last"]["kernel"][1])
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
    tower = lambda s: np.asarray(s.params["heads"]["towers"]["last"]["kernel"])
    d_plain, d_weighted = tower(s0) - tower(plain), tower(s0) - tower(weighted)
    np.testing.assert_allclose(d_weighted[0], 2.0 * d_plain[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(d_weighted[1], 0.5 * d_plain[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(plain.params["shared"]["bottom"]["last"]["kernel"]),
                               np.asarray(weighted.params["shared"]["bottom"]["last"]["kernel"]), rtol=1e-6)
