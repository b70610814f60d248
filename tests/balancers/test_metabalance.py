"""MetaBalance: moving averages of norms and the relaxed magnitude ratio."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.balancers.metabalance import metabalance


def test_two_steps_by_hand():
    b = metabalance()  # r = 0.7, beta = 0.9
    step = jax.jit(lambda g, s: b.update(jnp.ones(2), g, s))
    state = b.init(2)
    out, w, state = step(jnp.array([[3.0, 4.0], [0.0, 1.0]]), state)
    # m = 0.1 * (5, 1): factor = 0.7 * 5 + 0.3 = 3.8
    np.testing.assert_allclose(w, [1.0, 3.8], rtol=1e-6)
    np.testing.assert_allclose(out, [3.0, 4.0 + 3.8], rtol=1e-6)
    out, w, state = step(jnp.array([[3.0, 4.0], [0.0, 2.0]]), state)
    # m0 = 0.9 * 0.5 + 0.1 * 5 = 0.95, m1 = 0.9 * 0.1 + 0.1 * 2 = 0.29
    f = 0.7 * 0.95 / 0.29 + 0.3
    np.testing.assert_allclose(w, [1.0, f], rtol=1e-5)
    np.testing.assert_allclose(out, [3.0, 4.0 + 2.0 * f], rtol=1e-5)
    np.testing.assert_allclose(state.norm_ema[:, 0], [0.95, 0.29], rtol=1e-6)


def test_relax_zero_is_the_plain_sum_and_large_aux_is_shrunk():
    g = jnp.array([[1.0, 0.0], [0.0, 10.0], [0.0, 0.0]])
    out, w, _ = metabalance(relax_factor=0.0).update(jnp.ones(3), g, metabalance().init(3))
    np.testing.assert_allclose(out, [1.0, 10.0])
    out, w, _ = metabalance().update(jnp.ones(3), g, metabalance().init(3))
    # aux 1 is 10x the target: factor 0.7 * 0.1 + 0.3 = 0.37; zero aux keeps factor 1
    np.testing.assert_allclose(w, [1.0, 0.37, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out, [1.0, 3.7], rtol=1e-6)


def test_per_leaf_blocks():
    g = {"a": jnp.array([[2.0], [1.0]]), "b": jnp.array([[1.0, 0.0], [0.0, 4.0]])}
    b = metabalance(num_blocks=2)
    out, w, state = b.update(jnp.ones(2), g, b.init(2))
    fa = 0.7 * 2.0 + 0.3  # leaf a: |g0| / |g1| = 2
    fb = 0.7 * 0.25 + 0.3  # leaf b: 1 / 4
    np.testing.assert_allclose(out["a"], [2.0 + fa * 1.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], [1.0, 4.0 * fb], rtol=1e-6)
    np.testing.assert_allclose(w, [1.0, (fa + fb) / 2], rtol=1e-6)
    assert state.norm_ema.shape == (2, 2)
    with pytest.raises(ValueError, match="leaves"):
        metabalance(num_blocks=3).update(jnp.ones(2), g, metabalance(num_blocks=3).init(2))
    # whole vector: |g0| = sqrt(5), |g1| = sqrt(17)
    _, w, _ = metabalance().update(jnp.ones(2), g, metabalance().init(2))
    np.testing.assert_allclose(w, [1.0, 0.7 * np.sqrt(5 / 17) + 0.3], rtol=1e-6)
