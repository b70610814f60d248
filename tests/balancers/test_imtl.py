"""IMTL: equal projections (IMTL-G), the paper's closed form, IMTL-L scales."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.imtl import imtl, imtl_g_weights

_alpha = jax.jit(imtl_g_weights)


def test_two_tasks_by_hand():
    # u1 = (1, 0), u2 = (0, 1); d = (a, 2(1 - a)) has equal projections when a = 2/3
    g = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    b = imtl(mode="grad")
    out, w, _ = b.update(jnp.ones(2), g, b.init(2))
    np.testing.assert_allclose(w, [2 / 3, 1 / 3], rtol=1e-5)
    np.testing.assert_allclose(out, [2 / 3, 2 / 3], rtol=1e-5)


def _paper_closed_form(g):
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    d = g[0:1] - g[1:]
    uu = u[0:1] - u[1:]
    rest = g[0] @ uu.T @ np.linalg.inv(d @ uu.T)
    return np.concatenate([[1 - rest.sum()], rest])


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_equal_projections_and_paper_closed_form(t, seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(t, 6)) * rng.uniform(0.2, 5.0, size=(t, 1))
    alpha = np.asarray(_alpha(jnp.asarray(g @ g.T, jnp.float32)), np.float64)
    expected = _paper_closed_form(g)
    np.testing.assert_allclose(alpha.sum(), 1.0, atol=1e-4)
    d = alpha @ g
    proj = (g / np.linalg.norm(g, axis=1, keepdims=True)) @ d
    scale = np.abs(expected).max() * np.linalg.norm(g, axis=1).max()
    np.testing.assert_allclose(proj, proj[0], atol=2e-3 * scale)
    np.testing.assert_allclose(alpha, expected, atol=2e-3 * max(1.0, np.abs(expected).max()))


def test_degenerate_inputs():
    g = jnp.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])  # identical: 1/T each
    np.testing.assert_allclose(_alpha(g @ g.T), [1 / 3] * 3, rtol=1e-5)
    g = jnp.array([[1.0, 2.0], [-1.0, -2.0]])  # opposite: d = 0
    np.testing.assert_allclose(_alpha(g @ g.T), [0.5, 0.5], rtol=1e-5)
    # a zero gradient drops out; the others still get equal projections
    g = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    alpha = np.asarray(_alpha(jnp.asarray(g @ g.T)))
    d = alpha @ g
    np.testing.assert_allclose(d[0], d[1], rtol=1e-5)
    assert d[0] > 0


def test_loss_mode_scales_by_hand():
    b = imtl(mode="loss", learning_rate=1e-3)
    assert b.grads == "none"
    state = b.init(2)
    combined, w, state = b.update(jnp.array([2.0, 0.5]), None, state)
    assert combined is None
    np.testing.assert_allclose(w, [1.0, 1.0])
    # d/ds = e^s L - 1 = (1, -0.5): Adam's first step is -lr * sign
    np.testing.assert_allclose(state.log_scales, [-1e-3, 1e-3], atol=1e-7)
    _, w, _ = b.update(jnp.array([2.0, 0.5]), None, state)
    np.testing.assert_allclose(w, np.exp([-1e-3, 1e-3]), rtol=1e-6)


def test_scales_converge_to_inverse_losses():
    b = imtl(mode="loss", learning_rate=0.05)
    state = b.init(2)
    step = jax.jit(lambda s: b.update(jnp.array([4.0, 0.25]), None, s)[2])
    for _ in range(400):
        state = step(state)
    np.testing.assert_allclose(jnp.exp(state.log_scales), [0.25, 4.0], rtol=0.05)


def test_hybrid_applies_imtl_g_to_scaled_gradients():
    b = imtl()  # hybrid
    assert b.grads == "shared" and b.rep_grad
    rng = np.random.default_rng(0)
    g = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    state = b.init(3)._replace(log_scales=jnp.array([0.5, -0.3, 0.1]))
    state = state._replace(opt_state=b.init(3).opt_state)
    out, w, new_state = b.update(jnp.array([1.0, 2.0, 3.0]), g, state)
    scale = np.exp([0.5, -0.3, 0.1])
    np.testing.assert_allclose((np.asarray(w) / scale).sum(), 1.0, rtol=1e-4)  # alpha sums to 1
    gs = np.asarray(g) * scale[:, None]
    expected_alpha = _paper_closed_form(gs.astype(np.float64))
    np.testing.assert_allclose(np.asarray(w) / scale, expected_alpha, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(out, np.asarray(w) @ np.asarray(g), rtol=1e-5, atol=1e-6)
    assert not np.allclose(new_state.log_scales, state.log_scales)


def test_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        imtl(mode="both")
