"""FairGrad: the alpha-fair condition (G w)_i = w_i^(-1/alpha), hand values,
the official T-scaling and clipping, and agreement with Nash-MTL at alpha = 1."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl.balancers.fairgrad import fairgrad, fairgrad_weights
from mtl.balancers.nash_mtl import nash_mtl

_weights = jax.jit(fairgrad_weights, static_argnames="alpha")


@functools.cache
def _jitted(factory, **hparams):
    """One balancer and one jitted update per configuration (a compilation per input shape)."""
    b = factory(**hparams)
    return b, jax.jit(b.update)


def _update(factory, g, **hparams):
    b, step = _jitted(factory, **hparams)
    g = jnp.asarray(g, jnp.float32)
    return step(jnp.ones(g.shape[0]), g, b.init(g.shape[0]), key=jax.random.key(0))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), alpha=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
       extra=st.integers(0, 6), log_scale=st.floats(-2, 2))
def test_fairness_condition_on_well_conditioned_gramians(seed, alpha, extra, log_scale):
    rng = np.random.default_rng(seed)
    t = 3
    jac = (rng.normal(size=(t, t + extra)) + 2.0 * np.eye(t, t + extra)) * 10.0**log_scale
    gram = jac @ jac.T
    w = np.asarray(_weights(jnp.asarray(gram, jnp.float32), alpha=alpha), np.float64)
    assert np.all(w > 0)
    np.testing.assert_allclose(gram @ w, w ** (-1.0 / alpha), rtol=3e-3)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_orthogonal_gradients_by_hand(alpha):
    # c_i^2 w_i = w_i^(-1/alpha)  =>  w_i = c_i^(-2 alpha / (alpha + 1))
    c = np.array([0.5, 1.0, 3.0])
    w = np.asarray(_weights(jnp.asarray(np.diag(c**2), jnp.float32), alpha=alpha))
    np.testing.assert_allclose(w, c ** (-2 * alpha / (alpha + 1)), rtol=1e-4)


def test_larger_alpha_favours_the_weakest_task():
    # utilities u_i = g_i . d: max-min fairness equalises them as alpha grows
    c = np.array([0.5, 1.0, 3.0])
    g = jnp.asarray(np.diag(c), jnp.float32)
    spreads = []
    for alpha in [1.0, 4.0, 16.0]:
        w = np.asarray(_weights(g @ g.T, alpha=alpha))
        u = np.diag(c) @ (w @ np.diag(c))
        spreads.append(u.max() / u.min())
    assert spreads[0] > spreads[1] > spreads[2] > 1.0


def test_official_scaling_and_clipping():
    c = np.array([1.0, 2.0])
    d, weights, _ = _update(fairgrad, np.diag(c), max_norm=0.0)  # alpha = 1: w = 1 / c
    np.testing.assert_allclose(weights, 2.0 / c, rtol=1e-4)  # T w
    np.testing.assert_allclose(d, [2.0, 2.0], rtol=1e-4)
    d, _, _ = _update(fairgrad, np.diag(c))  # official max_norm = 1
    np.testing.assert_allclose(d, [np.sqrt(0.5)] * 2, rtol=1e-4)


def test_alpha_one_is_nash_mtl():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(3, 5)) + np.eye(3, 5)
    _, wf, _ = _update(fairgrad, g, max_norm=0.0)
    _, wn, _ = _update(nash_mtl, g, max_norm=0.0)
    np.testing.assert_allclose(np.asarray(wf) / 3, wn, rtol=1e-3)


def test_bad_alpha_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        fairgrad(alpha=0.0)
