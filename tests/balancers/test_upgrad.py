"""UPGrad: the update conflicts with no task, equals the mean without conflict,
matches a brute-force QP solution, and a two-task case by hand."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.upgrad import box_qp_lower, upgrad, upgrad_weights

_weights = jax.jit(upgrad_weights, static_argnames=("norm_eps", "reg_eps"))


def _qp_brute_force(gram, u):
    """argmin v^T G v s.t. v >= u by enumerating the free sets (KKT)."""
    t = len(u)
    best = None
    for free in itertools.product([False, True], repeat=t):
        free = np.array(free)
        v = u.copy()
        if free.any():
            v[free] = np.linalg.solve(gram[np.ix_(free, free)], -gram[np.ix_(free, ~free)] @ u[~free])
        if np.all(v >= u - 1e-12) and np.all((gram @ v)[~free] >= -1e-12):
            if best is None or v @ gram @ v < best @ gram @ best:
                best = v
    return best


def _upgrad_reference(jac, reg_eps=1e-4):
    t = jac.shape[0]
    gram = jac @ jac.T
    g = gram / np.trace(gram) + reg_eps * np.eye(t)
    return sum(_qp_brute_force(g, np.eye(t)[i] / t) for i in range(t))


def test_two_tasks_by_hand():
    # C = {x : x1 >= 0, x2 >= x1}; pi(g1) = (1/2, 1/2), pi(g2) = g2 projected on x1 = 0 -> (0, 1)
    g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    b = upgrad(reg_eps=0.0)
    d, w, _ = jax.jit(b.update)(jnp.ones(2), g, b.init(2), key=jax.random.key(0))
    np.testing.assert_allclose(d, [0.25, 0.75], rtol=1e-5)
    np.testing.assert_allclose(w, [1.0, 0.75], rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([2, 3, 5]), d=st.integers(1, 10),
       opposite=st.booleans())
def test_no_task_is_hurt(seed, t, d, opposite):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(t, d)) * rng.uniform(0.1, 10.0, size=(t, 1))
    if opposite:
        jac[1] = -jac[0]
    gram = jac @ jac.T
    w = np.asarray(_weights(jnp.asarray(gram, jnp.float32)), np.float64)
    # KKT of the regularised QPs: (G w)_j >= -reg_eps * trace(G) * w_j (0 without regularisation)
    ips = jac @ (w @ jac)
    bound = -1e-4 * np.trace(gram) * np.abs(w)
    assert np.all(ips >= bound - 1e-4 * np.trace(gram) / t), (ips, bound)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([2, 3, 5]), extra=st.integers(0, 5))
def test_no_task_is_hurt_without_regularisation_at_full_rank(seed, t, extra):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(t, t + extra)) + np.eye(t, t + extra)
    gram = jac @ jac.T
    w = np.asarray(_weights(jnp.asarray(gram, jnp.float32), reg_eps=0.0), np.float64)
    cos = (jac @ (w @ jac)) / (np.linalg.norm(jac, axis=1) * np.linalg.norm(w @ jac))
    assert np.all(cos >= -1e-4), cos


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([2, 3, 5]), d=st.integers(1, 8))
def test_without_conflict_the_update_is_the_mean(seed, t, d):
    rng = np.random.default_rng(seed)
    jac = rng.uniform(0.0, 3.0, size=(t, d))  # non-negative entries: g_i . g_j >= 0
    w = np.asarray(_weights(jnp.asarray(jac @ jac.T, jnp.float32)))
    np.testing.assert_allclose(w, 1.0 / t, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.sampled_from([3, 5]), d=st.integers(1, 10))
def test_matches_brute_force_qp(seed, t, d):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(t, d)) * rng.uniform(0.3, 3.0, size=(t, 1))
    w = np.asarray(_weights(jnp.asarray(jac @ jac.T, jnp.float32)), np.float64)
    ref = _upgrad_reference(jac)
    np.testing.assert_allclose(w, ref, rtol=2e-3, atol=2e-3 * np.max(np.abs(ref)))


def test_box_qp_solution_satisfies_kkt():
    gram = jnp.array([[2.0, -1.0, 0.5], [-1.0, 2.0, -1.5], [0.5, -1.5, 3.0]])
    u = jnp.array([0.2, 0.0, 0.1])
    v = np.asarray(jax.jit(box_qp_lower)(gram, u))
    mult = np.asarray(gram) @ v
    assert np.all(v >= np.asarray(u) - 1e-7) and np.all(mult >= -1e-6)
    np.testing.assert_allclose(mult * (v - np.asarray(u)), 0.0, atol=1e-6)


def test_zero_gradients_give_the_mean_weights():
    b = upgrad()
    d, w, _ = jax.jit(b.update)(jnp.ones(3), jnp.zeros((3, 4)), b.init(3), key=jax.random.key(0))
    np.testing.assert_allclose(w, 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(d, 0.0)
