"""CAGrad: c = 0 is the mean, the ball constraint holds, the dual is solved."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.cagrad import cagrad, cagrad_coefficients, cagrad_dual_weights

_coeffs = jax.jit(cagrad_coefficients, static_argnums=2)  # c traced: one compilation per (T, rescale)
_dual = jax.jit(cagrad_dual_weights)
_B = cagrad()
_STEP = jax.jit(_B.update)


def _jac(seed, t, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(t, d)) * rng.uniform(0.3, 3.0, size=(t, 1))


@pytest.mark.parametrize("t", [2, 3, 5])
def test_c_zero_is_the_mean_gradient(t):
    g = jnp.asarray(_jac(t, t), jnp.float32)
    b = cagrad(c=0.0)
    out, w, _ = jax.jit(b.update)(jnp.ones(t), {"g": g}, b.init(t))
    np.testing.assert_allclose(w, np.full(t, 1 / t), rtol=1e-6)
    np.testing.assert_allclose(out["g"], np.asarray(g).mean(0), rtol=1e-5, atol=1e-6)


def test_orthogonal_equal_gradients_by_hand():
    # symmetric: w = (1/2, 1/2), g_w = g_0 = (1/2, 1/2), lambda = c |g_0| / |g_w| = c,
    # d = (1 + c) g_0 / (1 + c^2) = (0.6, 0.6) for c = 0.5
    g = jnp.eye(2)
    out, w, _ = _STEP(jnp.ones(2), g, _B.init(2))
    np.testing.assert_allclose(w, [0.6, 0.6], rtol=1e-4)
    np.testing.assert_allclose(out, [0.6, 0.6], rtol=1e-4)
    for rescale, div in ((0, 1.0), (2, 1.5)):
        np.testing.assert_allclose(_coeffs(jnp.eye(2), 0.5, rescale), [0.75 / div] * 2, rtol=1e-4)


def _dual_objective(w, gram, c):
    t = gram.shape[0]
    return w @ gram @ np.full(t, 1 / t) + c * math.sqrt(max(gram.mean(), 0.0)) * math.sqrt(max(w @ gram @ w, 0.0))


def _grid_min(gram, c, n=300):
    t = gram.shape[0]
    if t == 2:
        s = np.linspace(0, 1, 20001)
        ws = np.stack([s, 1 - s], 1)
    else:
        x, y = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1))
        m = x + y <= 1
        ws = np.stack([x[m], y[m], 1 - x[m] - y[m]], 1)
    b = np.full(t, 1 / t)
    vals = ws @ gram @ b + c * math.sqrt(max(gram.mean(), 0.0)) * np.sqrt(
        np.maximum(np.einsum("ni,ij,nj->n", ws, gram, ws), 0.0))
    return vals.min()


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 3), st.integers(0, 10_000), st.sampled_from([0.2, 0.5, 0.9]), st.booleans())
def test_constraint_holds_and_dual_is_minimised(t, seed, c, conflict):
    g = _jac(seed, t)
    if conflict:
        g[1] = -g[0] * 0.8 + 0.05 * g[1]
    gram = g @ g.T
    alpha = np.asarray(_coeffs(jnp.asarray(gram, jnp.float32), c, 0), np.float64)
    d = alpha @ g
    g0 = g.mean(0)
    # |d - g0| <= c |g0| (CAGrad puts d on the sphere)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-3) + 1e-5
    # the dual weights are (nearly) optimal against a grid search
    w = np.asarray(_dual(jnp.asarray(gram, jnp.float32), c), np.float64)
    assert abs(w.sum() - 1) < 1e-5 and w.min() >= -1e-6
    gap = _dual_objective(w, gram, c) - _grid_min(gram, c)
    assert gap <= 1e-3 * np.trace(gram) / t


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_worst_task_improvement_is_maximal_in_the_ball(t, seed):
    g = _jac(seed, t)
    c = 0.5
    alpha = np.asarray(_coeffs(jnp.asarray(g @ g.T, jnp.float32), c, 0), np.float64)
    d = alpha @ g
    g0 = g.mean(0)
    best = (g @ d).min()
    rng = np.random.default_rng(seed + 1)
    u = rng.normal(size=(4000, g.shape[1]))
    u *= (rng.uniform(size=(4000, 1)) ** (1 / g.shape[1])) / np.linalg.norm(u, axis=1, keepdims=True)
    cand = g0 + c * np.linalg.norm(g0) * u  # points inside the ball
    assert (cand @ g.T).min(axis=1).max() <= best + 1e-3 * np.abs(best) + 1e-4


def test_bad_hyperparameters():
    with pytest.raises(ValueError):
        cagrad(c=-1.0)
    with pytest.raises(ValueError):
        cagrad(rescale=3)


def test_balancer_output_is_the_weighted_sum_of_the_solved_coefficients():
    g = _jac(11, 3)
    tree = {"a": jnp.asarray(g[:, :2], jnp.float32), "b": jnp.asarray(g[:, 2:].reshape(3, 3, 1), jnp.float32)}
    out, w, _ = _STEP(jnp.ones(3), tree, _B.init(3))
    alpha = np.asarray(_coeffs(jnp.asarray(g @ g.T, jnp.float32), 0.5, 1))
    np.testing.assert_allclose(w, alpha, rtol=1e-4, atol=1e-6)
    d = alpha @ g
    np.testing.assert_allclose(out["a"], d[:2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["b"].reshape(-1), d[2:], rtol=1e-4, atol=1e-5)
