"""SDMGrad: three batches per step; the exact inner solve by hand and on an
indefinite cross-Gramian; the official weight loop (inner="sgd") against a
NumPy transcription; limits lamda -> 0 (MGDA-like) and lamda -> inf (mean)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.balancers.base import cross_gramian, gramian
from mtl.balancers.sdmgrad import sdmgrad


def _proj_simplex(v):
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css - 1)[0][-1]
    return np.maximum(v - (css[rho] - 1) / (rho + 1), 0)


def _reference(w, zeta, xi1, xi2, lamda, niter, lr=10.0, momentum=0.5):
    """Official SDMGrad.sdmgrad with torch SGD(momentum) and the LibMTL scale."""
    gg = xi1 @ xi2.T
    scale = np.mean(np.sqrt(np.maximum(np.diag(gg), 0)))
    gg = gg / (scale**2 + 1e-8)
    gg_mean = gg.mean(axis=1)
    buf = None
    for _ in range(niter):
        grad = gg @ w + lamda * gg_mean
        buf = grad if buf is None else momentum * buf + grad
        w = _proj_simplex(w - lr * buf)
    t = len(w)
    d = t * (w @ zeta + lamda * zeta.mean(0)) / (1 + lamda)
    return w, d


def _batches(rng, t=3, d=5):
    base = rng.normal(size=(t, d))
    return [base + 0.3 * rng.normal(size=(t, d)) for _ in range(3)]


def test_sgd_mode_matches_the_official_weight_loop_over_two_steps():
    rng = np.random.default_rng(0)
    b = sdmgrad(max_norm=0.0, inner="sgd")
    state = b.init(3)
    step = jax.jit(b.update)
    w_ref = np.full(3, 1 / 3)
    for _ in range(2):
        zeta, xi1, xi2 = _batches(rng)
        grads = jnp.asarray(np.stack([zeta, xi1, xi2]), jnp.float32)  # (K=3, T, D)
        d, weights, state = step(jnp.ones((3, 3)), grads, state, key=None)
        w_ref, d_ref = _reference(w_ref, zeta, xi1, xi2, lamda=0.3, niter=20)
        np.testing.assert_allclose(state.w, w_ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(d, d_ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(weights, 3 * (w_ref + 0.3 / 3) / 1.3, rtol=1e-4, atol=1e-5)
    assert step._cache_size() == 1


def test_large_lamda_gives_the_mean_direction():
    rng = np.random.default_rng(1)
    grads = jnp.asarray(np.stack(_batches(rng)), jnp.float32)
    b = sdmgrad(lamda=1e6, max_norm=0.0)
    d, weights, _ = jax.jit(b.update)(jnp.ones((3, 3)), grads, b.init(3), key=None)
    np.testing.assert_allclose(weights, 1.0, rtol=1e-4)  # T * mean = sum of the zeta gradients
    np.testing.assert_allclose(d, np.asarray(grads[0]).sum(0), rtol=1e-4)


def test_small_lamda_with_equal_batches_is_the_min_norm_point():
    # g1 = e1, g2 = -e1 + e2: the min-norm weights are (0.6, 0.4), exactly, in one step
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    grads = jnp.asarray(np.stack([g, g, g]), jnp.float32)
    b = sdmgrad(lamda=0.0, max_norm=0.0)
    _, weights, state = jax.jit(b.update)(jnp.ones((3, 2)), grads, b.init(2), key=None)
    np.testing.assert_allclose(state.w, [0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(weights, [1.2, 0.8], rtol=1e-6)
    # the official loop needs many small steps to get there
    b = sdmgrad(lamda=0.0, niter=200, w_lr=0.5, momentum=0.0, max_norm=0.0, inner="sgd")
    _, _, state = jax.jit(b.update)(jnp.ones((3, 2)), grads, b.init(2), key=None)
    np.testing.assert_allclose(state.w, [0.6, 0.4], rtol=1e-4)


def test_exact_inner_problem_by_hand_with_lamda():
    # orthogonal g1 = e1, g2 = 2 e2, lamda = 1: h_i = g_i + g0 with g0 = (1/2, 1); h1 = (3/2, 1), h2 = (1/2, 3).
    # min |w h1 + (1 - w) h2|^2: d/dw = 0 at w = (|h2|^2 - h1.h2) / |h1 - h2|^2 = (37/4 - 15/4) / (1 + 4) = 11/10
    # -> clipped to the vertex w = (1, 0)
    g = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = sdmgrad(lamda=1.0, max_norm=0.0)
    _, weights, state = jax.jit(b.update)(jnp.ones((3, 2)), jnp.asarray(np.stack([g, g, g]), jnp.float32), b.init(2),
                                          key=None)
    np.testing.assert_allclose(state.w, [1.0, 0.0], atol=1e-6)
    # T (w + lamda/T) / (1 + lamda)
    np.testing.assert_allclose(weights, 2 * (np.array([1.0, 0.0]) + 0.5) / 2.0, rtol=1e-6)


def test_indefinite_cross_gramian_uses_its_positive_part():
    # xi = I, xi' = diag(1, -1): GG = diag(1, -1) is indefinite; its PSD part is diag(1, 0), and with
    # lamda = 0 the subproblem is min over the simplex of w1^2: w = (0, 1)
    g0 = np.eye(2)
    grads = jnp.asarray(np.stack([g0, np.eye(2), np.diag([1.0, -1.0])]), jnp.float32)
    b = sdmgrad(lamda=0.0, max_norm=0.0)
    _, weights, state = jax.jit(b.update)(jnp.ones((3, 2)), grads, b.init(2), key=None)
    np.testing.assert_allclose(state.w, [0.0, 1.0], atol=1e-6)
    assert np.all(np.isfinite(np.asarray(weights)))


def test_bad_inner_solver_is_refused():
    with pytest.raises(ValueError, match="inner"):
        sdmgrad(inner="adam")


def test_update_is_clipped_to_max_norm():
    rng = np.random.default_rng(2)
    grads = 100.0 * jnp.asarray(np.stack(_batches(rng)), jnp.float32)
    b = sdmgrad()
    d, _, _ = jax.jit(b.update)(jnp.ones((3, 3)), grads, b.init(3), key=None)
    np.testing.assert_allclose(np.linalg.norm(d), 1.0, rtol=1e-5)
    assert b.num_batches == 3 and not b.rep_grad


def test_cross_gramian():
    rng = np.random.default_rng(3)
    a = {"x": jnp.asarray(rng.normal(size=(3, 2, 2))), "y": jnp.asarray(rng.normal(size=(3, 4)))}
    c = {"x": jnp.asarray(rng.normal(size=(3, 2, 2))), "y": jnp.asarray(rng.normal(size=(3, 4)))}
    fa = np.concatenate([np.asarray(a["x"]).reshape(3, -1), np.asarray(a["y"])], axis=1)
    fc = np.concatenate([np.asarray(c["x"]).reshape(3, -1), np.asarray(c["y"])], axis=1)
    np.testing.assert_allclose(cross_gramian(a, c), fa @ fc.T, rtol=1e-5)
    np.testing.assert_allclose(cross_gramian(a, a), gramian(a), rtol=1e-6)
