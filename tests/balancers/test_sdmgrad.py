"""SDMGrad: three batches per step, against a NumPy transcription of the
official weight loop; limits lamda -> 0 (MGDA-like) and lamda -> inf (mean)."""

import jax
import jax.numpy as jnp
import numpy as np

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


def test_matches_the_official_weight_loop_over_two_steps():
    rng = np.random.default_rng(0)
    b = sdmgrad(max_norm=0.0)
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
    d, weights, _ = b.update(jnp.ones((3, 3)), grads, b.init(3), key=None)
    np.testing.assert_allclose(weights, 1.0, rtol=1e-4)  # T * mean = sum of the zeta gradients
    np.testing.assert_allclose(d, np.asarray(grads[0]).sum(0), rtol=1e-4)


def test_small_lamda_with_equal_batches_is_the_min_norm_point():
    # g1 = e1, g2 = -e1 + e2: the min-norm weights are (0.6, 0.4)
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    grads = jnp.asarray(np.stack([g, g, g]), jnp.float32)
    b = sdmgrad(lamda=0.0, niter=200, w_lr=0.5, momentum=0.0, max_norm=0.0)
    _, weights, state = b.update(jnp.ones((3, 2)), grads, b.init(2), key=None)
    np.testing.assert_allclose(state.w, [0.6, 0.4], rtol=1e-4)
    np.testing.assert_allclose(weights, [1.2, 0.8], rtol=1e-4)


def test_update_is_clipped_to_max_norm():
    rng = np.random.default_rng(2)
    grads = 100.0 * jnp.asarray(np.stack(_batches(rng)), jnp.float32)
    b = sdmgrad()
    d, _, _ = b.update(jnp.ones((3, 3)), grads, b.init(3), key=None)
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
