"""RLW: weights are T * softmax(z) with z drawn from the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.balancers.rlw import rlw


def _weights(b, key, t=3):
    return np.asarray(_sampler(b, t)(key))


_CACHE = {}


def _sampler(b, t):
    """One jitted weight sampler per (balancer, T), so each compiles once."""
    if (id(b), t) not in _CACHE:
        _CACHE[(id(b), t)] = (b, jax.jit(lambda k: b.update(jnp.ones((t,)), None, b.init(t), key=k)[1]))
    return _CACHE[(id(b), t)][1]


def test_normal_weights_are_t_softmax_of_standard_normal_draw():
    key = jax.random.key(7)
    w = _weights(rlw(), key)
    z = np.asarray(jax.random.normal(key, (3,)), np.float64)
    expected = 3 * np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(w, expected, rtol=1e-5)


@pytest.mark.parametrize("dist,draw", [
    ("uniform", lambda k, t: jax.random.uniform(k, (t,), jnp.float32)),
    ("dirichlet", lambda k, t: jax.random.dirichlet(k, jnp.ones((t,), jnp.float32))),
])
def test_uniform_and_dirichlet_weights_are_t_softmax_of_the_draw(dist, draw):
    key = jax.random.key(5)
    z = np.asarray(draw(key, 4), np.float64)
    np.testing.assert_allclose(_weights(rlw(distribution=dist), key, t=4), 4 * np.exp(z) / np.exp(z).sum(), rtol=1e-5)


@pytest.mark.parametrize("dist", ["normal", "uniform", "dirichlet"])
def test_weights_sum_to_t_and_vary_with_key(dist):
    b = rlw(distribution=dist)
    ws = np.stack([_weights(b, jax.random.key(i), t=4) for i in range(5)])
    np.testing.assert_allclose(ws.sum(axis=1), 4.0, rtol=1e-5)
    assert np.ptp(ws[:, 0]) > 1e-3  # different keys, different weights
    np.testing.assert_array_equal(_weights(b, jax.random.key(3), 4), _weights(b, jax.random.key(3), 4))


def test_mean_weight_is_one_per_task():
    b = rlw()
    keys = jax.random.split(jax.random.key(0), 4000)
    ws = jax.vmap(lambda k: b.update(jnp.ones((3,)), None, b.init(3), key=k)[1])(keys)
    np.testing.assert_allclose(np.asarray(ws).mean(axis=0), 1.0, atol=0.04)


def test_bernoulli_is_zero_one_and_never_all_zero():
    b = rlw(distribution="bernoulli")
    keys = jax.random.split(jax.random.key(1), 500)
    ws = np.asarray(jax.vmap(lambda k: b.update(jnp.ones((2,)), None, b.init(2), key=k)[1])(keys))
    assert set(np.unique(ws)) <= {0.0, 1.0}
    assert np.all(ws.sum(axis=1) >= 1)
    # conditioned on not all zero: each of (1,0), (0,1), (1,1) has probability 1/3
    np.testing.assert_allclose(ws.sum(axis=1).mean(), 4 / 3, atol=0.1)


def test_unknown_distribution():
    with pytest.raises(ValueError, match="cauchy"):
        rlw(distribution="cauchy")
