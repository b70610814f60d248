import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import mtl.balancers as mb
from mtl.balancers.pcgrad import pcgrad_coefficients

_B = mb.get("pcgrad")
_STEP = jax.jit(_B.update)  # one compilation per T


def _update(g, key=0):
    combined, w, _ = _STEP(jnp.ones(g.shape[0]), jnp.asarray(g, jnp.float32), _B.init(g.shape[0]),
                           key=jax.random.key(key))
    return np.asarray(combined), np.asarray(w)


def test_two_conflicting_2d_gradients_by_hand():
    # g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0.
    # g1' = g1 - (-1 / |g2|^2) g2 = (1, 0) + 0.5 (-1, 1) = (0.5, 0.5)
    # g2' = g2 - (-1 / |g1|^2) g1 = (-1, 1) + (1, 0)     = (0, 1)
    combined, w = _update(np.array([[1.0, 0.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(combined, [0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(w, [2.0, 1.5], atol=1e-6)  # (1, 0.5) + (1, 1)


def test_non_conflicting_gradients_are_summed_unchanged():
    g = np.array([[1.0, 0.5], [0.2, 1.0]])
    combined, w = _update(g)
    np.testing.assert_allclose(combined, g.sum(0), atol=1e-6)
    np.testing.assert_allclose(w, [1.0, 1.0])


def test_opposite_gradients_cancel_to_zero():
    combined, _ = _update(np.array([[1.0, 2.0], [-1.0, -2.0]]))
    np.testing.assert_allclose(combined, [0.0, 0.0], atol=1e-6)


def _reference(g, orders):
    """Algorithm 1 of the paper, literally, with given per-task orders."""
    out = []
    for i in range(g.shape[0]):
        gi = g[i].copy()
        for j in orders[i]:
            if j == i:
                continue
            d = gi @ g[j]
            if d < 0:
                gi = gi - d / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return np.sum(out, axis=0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_matches_literal_algorithm_with_the_same_random_orders(seed, t):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(t, 6))
    key = jax.random.key(seed % 1000)
    keys = jax.random.split(key, t)
    orders = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, t))(keys))
    combined, _ = _update(g, key=seed % 1000)
    np.testing.assert_allclose(combined, _reference(g, orders), rtol=1e-4, atol=1e-5)


def test_order_is_drawn_from_key():
    g = np.random.default_rng(3).normal(size=(4, 3))
    gram = jnp.asarray(g @ g.T, jnp.float32)
    cs = {tuple(np.round(np.asarray(pcgrad_coefficients(gram, jax.random.key(k))).ravel(), 5)) for k in range(20)}
    assert len(cs) > 1
