"""Every registered balancer stays finite on extreme inputs (issue 8, section 4).

Property-based (hypothesis, derandomised in conftest): for every method, the
update run twice (the second call from the first call's state) on

* gradients that are all zero, of size ~1e-30, of size ~1e30 (their squares
  overflow float32), exactly opposite in pairs, or random; per-task sizes
  spread over up to three decades on top of that;
* positive losses, or losses with one task at exactly zero (the extreme
  gradient sizes come with positive losses: a loss-normalising method such as
  DB-MTL legitimately multiplies a gradient by ``1 / (L + 1e-8)``);
* T in {1, 2, 3, 5, 8, 16}

returns finite weights, a finite combined gradient (``None`` exactly for the
loss-weighting methods) and a finite state. Methods with gradient-shaped state
(``init_takes_grads_like``) run in that mode, as the train step runs them.

Cost: one compilation per (method, T), cached; each draw runs every kind of
gradient; every method runs T = 16 (an explicit example) plus the T of the
hypothesis draws (T = 2, 3 are also in tests/test_balancer_contract.py).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mtl.balancers as mb

NAMES = sorted(mb.REGISTRY)
T_CHOICES = (1, 2, 3, 5, 8, 16)
GRADIENTS = ("zero", "tiny", "huge", "opposite", "random")
SCALE = {"zero": 0.0, "tiny": 1e-30, "huge": 1e30, "opposite": 1.0, "random": 1.0}


@functools.cache
def _compiled(name, t):
    """The balancer (run facts bound as the training loop binds them) and its jitted update."""
    b = mb.with_run_facts(mb.get(name), steps_per_epoch=1, rep_grad=False)
    return b, jax.jit(lambda losses, grads, state, key: b.update(losses, grads, state, key=key))


def _inputs(b, t, gradients, zero_loss, spread, seed):
    rng = np.random.default_rng(seed)
    losses = rng.uniform(0.5, 2.0, size=t)
    if zero_loss:
        losses[rng.integers(t)] = 0.0
    g = rng.normal(size=(t, 8)) * 10.0 ** rng.uniform(-spread, spread, size=(t, 1))
    if gradients == "opposite":
        g[1::2] = -g[0:t - t % 2:2]
    g = (g * SCALE[gradients]).astype(np.float32)
    tree = {"a": g[:, :4], "b": g[:, 4:].reshape(t, 2, 2)}
    k = b.num_batches
    if k > 1:  # K batches: the same gradients, the same losses
        losses = np.stack([losses] * k)
        tree = jax.tree_util.tree_map(lambda x: np.stack([x] * k), tree)
    return jnp.asarray(losses, jnp.float32), (jax.tree_util.tree_map(jnp.asarray, tree) if b.needs_grads else None)


def _one_task_like(tree, k):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[2 if k > 1 else 1:], x.dtype), tree)


def _assert_finite(name, tree, what):
    for leaf in jax.tree_util.tree_leaves(tree):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            assert np.all(np.isfinite(leaf)), (name, what, leaf)
        else:  # counters and masks
            assert np.issubdtype(leaf.dtype, np.integer) or leaf.dtype == bool, (name, what, leaf.dtype)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3)
@given(t=st.sampled_from(T_CHOICES), zero_loss=st.booleans(), spread=st.floats(0.0, 1.5),
       seed=st.integers(0, 2**16))
@example(t=16, zero_loss=True, spread=1.5, seed=0)
def test_every_balancer_stays_finite(name, t, zero_loss, spread, seed):
    b, run = _compiled(name, t)
    for gradients in GRADIENTS:  # every kind of gradient for each draw (one compilation per T)
        # the extreme gradient sizes come with positive losses (see the module docstring)
        losses, grads = _inputs(b, t, gradients, zero_loss and gradients not in ("tiny", "huge"), spread, seed)
        state = b.init(t, grads_like=_one_task_like(grads, b.num_batches)) if b.init_takes_grads_like else b.init(t)
        for i in range(2):
            combined, weights, state = run(losses, grads, state, jax.random.key(seed + i))
            what = f"{gradients} T={t} call {i}"
            assert weights.shape == (t,)
            _assert_finite(name, weights, "weights " + what)
            if b.grads == "shared":
                assert combined is not None
                _assert_finite(name, combined, "combined " + what)
            else:
                assert combined is None
            _assert_finite(name, state, "state " + what)


def test_huge_gradients_keep_their_scale():
    """1e30 gradients: the rescaled Gramian gives the same weights as the same gradients at 1e0
    (scale-invariant methods), and the combined gradient is ~1e30, not inf or 0."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 5)).astype(np.float32)
    for name in ("mgda", "cagrad", "upgrad", "aligned_mtl", "imtl", "pcgrad"):
        b, run = _compiled(name, 3)
        small = run(jnp.ones(3), {"a": jnp.asarray(g[:, :4]), "b": jnp.asarray(g[:, 4:].reshape(3, 1, 1))},
                    b.init(3), jax.random.key(0))
        big = run(jnp.ones(3), {"a": jnp.asarray(g[:, :4] * 1e30), "b": jnp.asarray(g[:, 4:].reshape(3, 1, 1) * 1e30)},
                  b.init(3), jax.random.key(0))
        np.testing.assert_allclose(big[1], small[1], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(np.asarray(big[0]["a"]) / 1e30, small[0]["a"], rtol=1e-4, atol=1e-6, err_msg=name)
    # Nash-MTL's weights scale as 1 / |g|: the update (before clipping) does not depend on the scale
    b, run = _compiled("nash_mtl", 3)
    tree = {"a": jnp.asarray(g[:, :4]), "b": jnp.asarray(g[:, 4:].reshape(3, 1, 1))}
    _, a_small, _ = run(jnp.ones(3), tree, b.init(3), jax.random.key(0))
    _, a_big, _ = run(jnp.ones(3), jax.tree_util.tree_map(lambda x: x * 1e30, tree), b.init(3), jax.random.key(0))
    np.testing.assert_allclose(np.asarray(a_big) * 1e30, a_small, rtol=1e-4)
