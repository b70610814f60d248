"""Nash-MTL: the bargaining condition (G alpha)_i alpha_i = 1, hand values,
scale invariance of the update, clipping and the weight-reuse schedule."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.base import clip_by_global_norm
from mtl.balancers.nash_mtl import nash_mtl, nash_weights

_weights = jax.jit(nash_weights)


@functools.cache
def _jitted(factory, **hparams):
    """One balancer and one jitted update per configuration (a compilation per input shape)."""
    b = factory(**hparams)
    return b, jax.jit(b.update)


def _update(factory, g, state=None, **hparams):
    b, step = _jitted(factory, **hparams)
    g = jnp.asarray(g, jnp.float32)
    state = b.init(g.shape[0]) if state is None else state
    return step(jnp.ones(g.shape[0]), g, state, key=jax.random.key(0))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([2, 3, 5]), extra=st.integers(0, 8),
       log_scale=st.floats(-3, 3))
def test_bargaining_condition_on_well_conditioned_gramians(seed, t, extra, log_scale):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(t, t + extra)) + 2.0 * np.eye(t, t + extra)  # well conditioned
    jac *= 10.0**log_scale
    gram = jac @ jac.T
    alpha = np.asarray(_weights(jnp.asarray(gram, jnp.float32)), np.float64)
    assert np.all(alpha > 0)
    np.testing.assert_allclose((gram @ alpha) * alpha, 1.0, rtol=2e-3)


def test_orthogonal_gradients_by_hand():
    # G = diag(c^2): alpha_i = 1 / c_i, d = sum_i e_i with norm sqrt(T)
    c = np.array([0.5, 2.0, 8.0])
    d, alpha, _ = _update(nash_mtl, np.diag(c), max_norm=0.0)
    np.testing.assert_allclose(alpha, 1 / c, rtol=1e-4)
    np.testing.assert_allclose(d, [1.0, 1.0, 1.0], rtol=1e-4)


def test_identical_gradients_by_hand():
    # G = |g|^2 11^T: T |g|^2 a^2 = 1
    g = np.array([3.0, 4.0])
    _, alpha, _ = _update(nash_mtl, np.stack([g, g, g, g]), max_norm=0.0)
    np.testing.assert_allclose(alpha, 1 / (5.0 * 2.0), rtol=1e-4)


def test_update_norm_is_sqrt_t_whatever_the_scale_and_clipped_to_max_norm():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(3, 6)) + np.eye(3, 6)
    d_small, _, _ = _update(nash_mtl, 1e-3 * g, max_norm=0.0)
    d_big, _, _ = _update(nash_mtl, 1e3 * g, max_norm=0.0)
    np.testing.assert_allclose(np.linalg.norm(d_small), np.sqrt(3), rtol=1e-3)
    np.testing.assert_allclose(d_small, d_big, rtol=2e-3, atol=1e-5)
    d_clip, alpha, _ = _update(nash_mtl, g)  # official max_norm = 1
    np.testing.assert_allclose(np.linalg.norm(d_clip), 1.0, rtol=1e-5)
    np.testing.assert_allclose(d_clip, d_small / np.sqrt(3), rtol=2e-3, atol=1e-5)


def test_weights_are_reused_between_updates():
    kw = dict(update_weights_every=2, max_norm=0.0)
    g1 = np.diag([1.0, 2.0])
    g2 = np.diag([4.0, 4.0])
    _, a1, s = _update(nash_mtl, g1, **kw)
    _, a2, s = _update(nash_mtl, g2, s, **kw)   # step 1: reuse
    _, a3, s = _update(nash_mtl, g2, s, **kw)   # step 2: recompute
    np.testing.assert_allclose(a1, [1.0, 0.5], rtol=1e-4)
    np.testing.assert_allclose(a2, a1)
    np.testing.assert_allclose(a3, [0.25, 0.25], rtol=1e-4)
    assert int(s.step) == 3


def test_opposite_gradients_stay_finite():
    g = np.array([[1.0, -2.0], [-1.0, 2.0]])
    d, alpha, _ = _update(nash_mtl, g)
    assert np.all(np.isfinite(alpha)) and np.all(alpha > 0)
    np.testing.assert_allclose(d, 0.0, atol=1e-3)


def test_clip_by_global_norm():
    tree = {"a": jnp.array([3.0]), "b": jnp.array([[4.0]])}
    clipped, scale = clip_by_global_norm(tree, 1.0)
    np.testing.assert_allclose(scale, 0.2, rtol=1e-6)
    np.testing.assert_allclose(clipped["a"], [0.6], rtol=1e-6)
    same, scale = clip_by_global_norm(tree, 10.0)
    np.testing.assert_allclose(same["b"], [[4.0]])
    assert float(scale) == 1.0
