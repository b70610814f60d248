"""MGDA: hand values for two tasks, the min-norm point's optimality condition,
a brute-force grid for three tasks, and the gradient normalisations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.base import min_norm_weights
from mtl.balancers.mgda import mgda

_solve = jax.jit(min_norm_weights)


@functools.cache
def _jitted(factory, **hparams):
    """One balancer and one jitted update per configuration (a compilation per input shape)."""
    b = factory(**hparams)
    return b, jax.jit(b.update)


def _update(factory, losses, g, **hparams):
    b, step = _jitted(factory, **hparams)
    return step(jnp.asarray(losses, jnp.float32), jnp.asarray(g, jnp.float32), b.init(len(losses)),
                key=jax.random.key(0))


def test_two_tasks_by_hand():
    # G = [[1, -1], [-1, 2]]: gamma = (2 + 1) / (1 + 2 + 2) = 3/5
    d, w, _ = _update(mgda, [1.0, 1.0], [[1.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_allclose(w, [0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(d, [0.2, 0.4], rtol=1e-6, atol=1e-7)


def test_two_tasks_endpoint_is_exact():
    # g2 = 2 g1: the min-norm point is g1 itself (official code would give 0.999 / 0.001)
    d, w, _ = _update(mgda, [1.0, 1.0], [[1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(w, [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(d, [1.0, 1.0], rtol=1e-6)


def test_orthogonal_gradients_by_hand():
    # g_i = c_i e_i: w_i proportional to 1 / c_i^2
    c = np.array([1.0, 2.0, 4.0])
    d, w, _ = _update(mgda, [1.0] * 3, np.diag(c))
    expected = (1 / c**2) / np.sum(1 / c**2)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    np.testing.assert_allclose(d, expected * c, rtol=1e-5)


def test_opposite_gradients_give_zero_update():
    g = np.array([[1.0, 2.0, -1.0], [-1.0, -2.0, 1.0], [0.5, 0.1, 0.3]])
    d, w, _ = _update(mgda, [1.0] * 3, g)
    np.testing.assert_allclose(d, 0.0, atol=1e-6)
    np.testing.assert_allclose(w[:2], [0.5, 0.5], atol=1e-6)


def test_zero_gradients_give_uniform_weights():
    d, w, _ = _update(mgda, [1.0] * 3, np.zeros((3, 4)))
    np.testing.assert_allclose(w, 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(d, 0.0)


def _grid_min(gram, n=200):
    # every point of the 3-simplex with step 1/n
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    w = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n
    return np.min(np.einsum("ki,ij,kj->k", w, gram, w))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 6))
def test_three_tasks_beat_a_brute_force_grid(seed, d):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(3, d)) * rng.uniform(0.2, 5.0, size=(3, 1))
    gram = jac @ jac.T
    w = np.asarray(_solve(jnp.asarray(gram, jnp.float32)), np.float64)
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-5
    scale = np.max(np.diag(gram))
    assert w @ gram @ w <= _grid_min(gram) + 1e-5 * scale


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([3, 5, 8]), d=st.integers(1, 12),
       conflict=st.booleans())
def test_min_norm_optimality_condition(seed, t, d, conflict):
    # u = J^T w is the min-norm point of the hull iff g_j . u >= |u|^2 for every j
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(t, d)) * rng.uniform(0.1, 10.0, size=(t, 1))
    if conflict:
        jac[1] = -jac[0]
    gram = jac @ jac.T
    w = np.asarray(_solve(jnp.asarray(gram, jnp.float32)), np.float64)
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-5
    u = w @ jac
    scale = np.max(np.diag(gram))
    assert np.min(jac @ u) >= u @ u - 1e-4 * scale


def test_l2_normalisation_is_invariant_to_gradient_scales():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 5))
    scales = np.array([1.0, 10.0, 0.1])[:, None]
    _, w1, _ = _update(mgda, [1.0] * 3, g, normalization="l2")
    d2, w2, _ = _update(mgda, [1.0] * 3, g * scales, normalization="l2")
    np.testing.assert_allclose(w1, w2, rtol=1e-4, atol=1e-6)
    # the weights apply to the raw (unnormalised) gradients, as in the official script
    np.testing.assert_allclose(d2, np.asarray(w2) @ (g * scales), rtol=1e-4, atol=1e-5)


def test_loss_normalisation_divides_by_the_losses():
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    # normalised gradients (1/2) e1 and (1/1) e2: w proportional to (4, 1)
    _, w, _ = _update(mgda, [2.0, 1.0], g, normalization="loss")
    np.testing.assert_allclose(w, [0.8, 0.2], rtol=1e-6)
    # loss+: |g_i| L_i = (2, 1) again
    _, w, _ = _update(mgda, [2.0, 1.0], g, normalization="loss+")
    np.testing.assert_allclose(w, [0.8, 0.2], rtol=1e-6)


def test_pytree_gradients_and_flags():
    b = mgda()
    assert b.rep_grad and b.grads == "shared" and b.num_batches == 1  # MGDA-UB via rep_grad
    tree = {"a": jnp.array([[1.0, 0.0]]).repeat(2, 0).at[1].set(jnp.array([-1.0, 1.0])),
            "b": jnp.zeros((2, 3, 1))}
    d, w, _ = jax.jit(b.update)(jnp.ones(2), tree, b.init(2), key=jax.random.key(0))
    np.testing.assert_allclose(w, [0.6, 0.4], rtol=1e-6)
    assert d["b"].shape == (3, 1)


def test_bad_normalization_is_refused():
    with pytest.raises(ValueError, match="normalization"):
        mgda(normalization="max")
