"""GradVac: hand values, the cosine target is reached, and the Gramian loop
matches the literal algorithm on full vectors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.gradvac import GradVacState, gradvac, gradvac_coefficients


def test_two_tasks_from_zero_targets_by_hand():
    g = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    b = gradvac()  # beta 0.5
    out, w, state = jax.jit(b.update)(jnp.ones(2), g, b.init(2), key=jax.random.key(0))
    # phi = -1/sqrt2 < 0: g1' = g1 + (1/sqrt2)/sqrt2 g2 = (1/2, 1/2);
    # g2' = g2 + sqrt2 (1/sqrt2) / 1 g1 = (0, 1)
    np.testing.assert_allclose(out, [0.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(w, [2.0, 1.5], rtol=1e-6)
    # phihat = 0.5 * 0 + 0.5 * (-1/sqrt2)
    np.testing.assert_allclose(state.targets, [[0.0, -0.5 / math.sqrt(2)], [-0.5 / math.sqrt(2), 0.0]], rtol=1e-6)


def test_positive_target_is_reached():
    g = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    state = GradVacState(jnp.array([[0.0, 0.5], [0.5, 0.0]]))
    out, w, _ = gradvac().update(jnp.ones(2), g, state, key=jax.random.key(1))
    # w = (0.5 * 1 - 0) / sqrt(0.75) = 1/sqrt3 for both
    np.testing.assert_allclose(w, [1 + 1 / math.sqrt(3)] * 2, rtol=1e-6)


def test_pre_2024_libmtl_target_rule_only_moves_on_correction():
    g = jnp.array([[1.0, 0.2], [0.3, 1.0]])  # cosine > 0 = target: no correction
    b = gradvac(update_target_always=False)
    out, w, state = b.update(jnp.ones(2), g, b.init(2), key=jax.random.key(0))
    np.testing.assert_allclose(state.targets, 0.0)
    np.testing.assert_allclose(out, [1.3, 1.2], rtol=1e-6)
    _, _, state = gradvac().update(jnp.ones(2), g, b.init(2), key=jax.random.key(0))
    cos = (0.3 + 0.2) / (math.hypot(1, 0.2) * math.hypot(0.3, 1))
    np.testing.assert_allclose(state.targets[0, 1], 0.5 * cos, rtol=1e-5)


def _literal(g, targets, orders, beta):
    """The paper's loop on full vectors (float64)."""
    t = g.shape[0]
    targets = targets.copy()
    out = []
    for i in range(t):
        gi = g[i].copy()
        for j in orders[i]:
            if j == i:
                continue
            phi = gi @ g[j] / (np.linalg.norm(gi) * np.linalg.norm(g[j]) + 1e-8)
            hat = targets[i, j]
            if phi < hat:
                w = np.linalg.norm(gi) * (hat * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - hat**2)) / (
                    np.linalg.norm(g[j]) * np.sqrt(1 - hat**2) + 1e-8)
                gi = gi + w * g[j]
            targets[i, j] = (1 - beta) * hat + beta * phi
        out.append(gi)
    return np.sum(out, axis=0), targets


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_gramian_loop_matches_literal_algorithm(t, seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(t, 7))
    targets = rng.uniform(-0.5, 0.8, size=(t, t))
    orders = np.stack([rng.permutation(t) for _ in range(t)])
    coeffs, new_targets = _gradvac_jit(jnp.asarray(g @ g.T, jnp.float32), jnp.asarray(targets, jnp.float32),
                                       jnp.asarray(orders))
    expected, expected_targets = _literal(g, targets, orders, 0.5)
    np.testing.assert_allclose(np.asarray(coeffs).sum(0) @ g, expected, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(np.asarray(new_targets)[~np.eye(t, dtype=bool)],
                               expected_targets[~np.eye(t, dtype=bool)], atol=2e-5)


_gradvac_jit = jax.jit(lambda gram, targets, orders: gradvac_coefficients(gram, targets, orders, 0.5))


def test_vaccinated_cosine_equals_target_for_two_tasks():
    rng = np.random.default_rng(3)
    hat = 0.6
    for cos0 in (-0.9, -0.3, 0.0, 0.3, 0.59, 0.8):
        u = rng.normal(size=5)
        u /= np.linalg.norm(u)
        z = rng.normal(size=5)
        z -= (z @ u) * u
        z /= np.linalg.norm(z)
        g = np.stack([2.0 * u, 0.5 * (cos0 * u + np.sqrt(1 - cos0**2) * z)])  # cos(g1, g2) = cos0
        coeffs, _ = _gradvac_jit(jnp.asarray(g @ g.T, jnp.float32), jnp.full((2, 2), hat, jnp.float32),
                                 jnp.array([[0, 1], [1, 0]]))
        gi = np.asarray(coeffs[0]) @ g
        cos = gi @ g[1] / (np.linalg.norm(gi) * np.linalg.norm(g[1]))
        # below the target the correction lifts the cosine exactly to it; above it nothing changes
        np.testing.assert_allclose(cos, max(cos0, hat), atol=1e-4)
        if cos0 >= hat:
            np.testing.assert_allclose(coeffs[0], [1.0, 0.0], atol=1e-7)
