"""Aligned-MTL: the aligned gradients are orthogonal with equal norms
sqrt(lambda_min), hand values, rank deficiency and scale behaviour."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.aligned_mtl import aligned_matrix, aligned_mtl

_matrix = jax.jit(aligned_matrix, static_argnames="scale_mode")


@functools.cache
def _jitted(factory, **hparams):
    """One balancer and one jitted update per configuration (a compilation per input shape)."""
    b = factory(**hparams)
    return b, jax.jit(b.update)


def _update(g, **kw):
    b, step = _jitted(aligned_mtl, **kw)
    g = jnp.asarray(g, jnp.float32)
    return step(jnp.ones(g.shape[0]), g, b.init(g.shape[0]), key=jax.random.key(0))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([2, 3, 4]), extra=st.integers(0, 6))
def test_aligned_gramian_is_lambda_min_times_identity(seed, t, extra):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(t, t + extra)) + 1.5 * np.eye(t, t + extra)  # full rank
    gram = jac @ jac.T
    w = np.asarray(_matrix(jnp.asarray(gram, jnp.float32)), np.float64)
    aligned = w @ jac
    eig = np.linalg.eigvalsh(gram)
    lam_min = eig[0]
    # float32 eigh: errors scale with the largest eigenvalue
    np.testing.assert_allclose(aligned @ aligned.T, lam_min * np.eye(t), atol=2e-3 * lam_min + 2e-5 * eig[-1])
    # the update is the sum of the aligned gradients
    d, weights, _ = _update(jac)
    np.testing.assert_allclose(d, aligned.sum(0), rtol=2e-3, atol=1e-4 * np.sqrt(lam_min))


def test_orthogonal_gradients_by_hand():
    # G = diag(c^2): aligned gradients c_min e_i, weights c_min / c_i
    c = np.array([1.0, 2.0, 4.0])
    d, w, _ = _update(np.diag(c))
    np.testing.assert_allclose(w, 1.0 / c, rtol=1e-5)
    np.testing.assert_allclose(d, [1.0, 1.0, 1.0], rtol=1e-5)
    # median / rmse scales: eigenvalues (1, 4, 16)
    _, w, _ = _update(np.diag(c), scale_mode="median")
    np.testing.assert_allclose(w, 2.0 / c, rtol=1e-5)
    _, w, _ = _update(np.diag(c), scale_mode="rmse")
    np.testing.assert_allclose(w, np.sqrt(7.0) / c, rtol=1e-5)


def test_rank_deficient_cases():
    g = np.array([1.0, -2.0, 0.5])
    # identical: rank 1, W = 11^T / T, weights 1, update T g
    d, w, _ = _update(np.stack([g, g, g]))
    np.testing.assert_allclose(w, 1.0, rtol=1e-4)
    np.testing.assert_allclose(d, 3 * g, rtol=1e-4)
    # opposite: the only component is g1 - g2, whose aligned sum is zero
    d, w, _ = _update(np.stack([g, -g]))
    np.testing.assert_allclose(w, 0.0, atol=1e-5)
    np.testing.assert_allclose(d, 0.0, atol=1e-5)
    # zero
    d, w, _ = _update(np.zeros((3, 3)))
    assert np.all(np.asarray(w) == 0.0) and np.all(np.asarray(d) == 0.0)
    # rank 2 of 3 tasks: g3 = g1 + g2 (one zero eigenvalue dropped)
    g1, g2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
    d, w, _ = _update(np.stack([g1, g2, g1 + g2]))
    assert np.all(np.isfinite(np.asarray(d)))
    jac = np.stack([g1, g2, g1 + g2])
    aligned = np.asarray(_matrix(jnp.asarray(jac @ jac.T, jnp.float32))) @ jac
    lam = np.linalg.eigvalsh(jac @ jac.T)
    # on the span: equal singular values sqrt(lambda_min over the positive ones)
    sv = np.linalg.svd(aligned, compute_uv=False)
    np.testing.assert_allclose(sv[:2], np.sqrt(lam[1]), rtol=1e-4)
    assert sv[2] < 1e-3


def test_weights_are_scale_invariant():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(3, 7))
    d1, w1, _ = _update(g)
    d2, w2, _ = _update(100.0 * g)
    np.testing.assert_allclose(w1, w2, rtol=1e-4)
    np.testing.assert_allclose(100.0 * np.asarray(d1), d2, rtol=1e-4)


def test_flags_and_bad_scale_mode():
    b = aligned_mtl()
    assert b.rep_grad and b.grads == "shared"  # Aligned-MTL-UB via rep_grad
    with pytest.raises(ValueError, match="scale_mode"):
        aligned_mtl(scale_mode="max")
