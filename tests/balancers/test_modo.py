"""MoDo: the double-sampling weight step by hand and against NumPy, the update
from the third batch, and convergence to the regularised min-norm weights."""

import jax
import jax.numpy as jnp
import numpy as np

from mtl.balancers.modo import modo


def _proj_simplex(v):
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css - 1)[0][-1]
    return np.maximum(v - (css[rho] - 1) / (rho + 1), 0)


def test_one_step_by_hand():
    # batches 1 and 2: J1 = I, J2 = diag(1, 3) -> J1 J2^T lam = (0.5, 1.5) at lam = (1/2, 1/2)
    g0 = np.array([[2.0, 0.0], [0.0, 4.0]])
    grads = jnp.asarray(np.stack([g0, np.eye(2), np.diag([1.0, 3.0])]), jnp.float32)
    b = modo(gamma=0.1, rho=0.0)
    d, lam, state = b.update(jnp.ones((3, 2)), grads, b.init(2), key=None)
    # lam - 0.1 (0.5, 1.5) = (0.45, 0.35) -> projected: + 0.1 each = (0.55, 0.45)
    np.testing.assert_allclose(lam, [0.55, 0.45], rtol=1e-6)
    np.testing.assert_allclose(d, [1.1, 1.8], rtol=1e-6)  # from batch 0 only
    np.testing.assert_allclose(state.lambd, lam)


def test_matches_numpy_over_steps():
    rng = np.random.default_rng(0)
    b = modo(gamma=0.05, rho=0.1)
    state = b.init(3)
    step = jax.jit(b.update)
    lam = np.full(3, 1 / 3)
    for _ in range(5):
        g = rng.normal(size=(3, 3, 4))
        d, out, state = step(jnp.ones((3, 3)), jnp.asarray(g, jnp.float32), state, key=None)
        lam = _proj_simplex(lam - 0.05 * (g[1] @ (g[2].T @ lam) + 0.1 * lam))
        np.testing.assert_allclose(out, lam, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(d, lam @ g[0], rtol=1e-5, atol=1e-6)
    assert step._cache_size() == 1


def test_converges_to_the_regularised_min_norm_weights():
    # equal batches, g1 = e1, g2 = -e1 + e2, rho = 0: min-norm weights (0.6, 0.4)
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])
    grads = jnp.asarray(np.stack([g, g, g]), jnp.float32)
    b = modo(gamma=0.2, rho=0.0)
    state = b.init(2)
    step = jax.jit(b.update)
    for _ in range(300):
        _, lam, state = step(jnp.ones((3, 2)), grads, state, key=None)
    np.testing.assert_allclose(lam, [0.6, 0.4], rtol=1e-4)
    assert b.num_batches == 3 and not b.rep_grad
