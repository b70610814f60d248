"""GLS: the weights reproduce the gradient of the geometric mean of the losses."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.gls import gls

_B = gls()
_update = jax.jit(lambda l: _B.update(l, None, _B.init(l.shape[0]))[1])


def _weights(losses):
    return np.asarray(_update(jnp.asarray(losses, jnp.float32)))


def test_hand_values():
    # L = (1, 4): GLS = 2, w_i = 2 / (2 L_i) = (1, 1/4)
    np.testing.assert_allclose(_weights([1.0, 4.0]), [1.0, 0.25], rtol=1e-6)
    # equal losses: w_i = 1 / T
    np.testing.assert_allclose(_weights([3.0, 3.0, 3.0]), [1 / 3] * 3, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_weighted_gradient_equals_gradient_of_geometric_mean(t, seed):
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.normal(size=(t, 3)), jnp.float32)
    c = jnp.asarray(rng.uniform(0.1, 2.0, size=(t,)), jnp.float32)
    theta = jnp.asarray(rng.normal(size=(3,)), jnp.float32)

    def losses(th):  # positive task losses
        return jnp.square(a @ th) + c

    def geometric(th):
        return jnp.prod(losses(th)) ** (1.0 / t)

    w = _weights(np.asarray(losses(theta)))
    weighted = jax.grad(lambda th: jnp.dot(jnp.asarray(w), losses(th)))(theta)
    np.testing.assert_allclose(weighted, jax.grad(geometric)(theta), rtol=2e-4, atol=1e-5)


def test_many_tasks_and_tiny_losses_stay_finite():
    w = _weights(np.full((50,), 1e-3))
    np.testing.assert_allclose(w, 1 / 50, rtol=1e-4)
    assert np.all(np.isfinite(_weights([0.0, 1.0])))
