import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtl.balancers as mb


def test_uw_weights_and_fixed_point():
    b = mb.get("uw", learning_rate=0.05)
    state = b.init(2)
    _, w, _ = b.update(jnp.array([1.0, 4.0]), None, state)
    np.testing.assert_allclose(w, [0.5, 0.5])  # s = 0 -> 0.5 * exp(0)
    upd = jax.jit(b.update)
    for _ in range(1500):
        _, w, state = upd(jnp.array([1.0, 4.0]), None, state)
    # dL/ds = 0.5 (1 - exp(-s) L) = 0  <=>  s = log L
    np.testing.assert_allclose(state.log_vars, np.log([1.0, 4.0]), atol=2e-2)
    np.testing.assert_allclose(w, 0.5 / np.array([1.0, 4.0]), rtol=3e-2)


def test_gradnorm_first_steps_by_hand():
    b = mb.get("gradnorm", alpha=1.5, learning_rate=0.025)
    state = b.init(2)
    grads = jnp.array([[1.0, 0.0], [0.0, 3.0]])  # norms 1 and 3
    losses = jnp.array([2.0, 2.0])
    _, w, state = b.update(losses, grads, state)
    np.testing.assert_allclose(w, [1.0, 1.0])  # the step uses the weights before the update
    # r_i = 1, target = mean(G) = 2; dL_grad/dw = (sign(1 - 2) * 1, sign(3 - 2) * 3) = (-1, 3).
    # Adam's first step moves each weight by lr against the gradient's sign.
    np.testing.assert_allclose(state.weights, [1.025, 0.975], rtol=1e-5)
    np.testing.assert_allclose(state.weights.sum(), 2.0, rtol=1e-6)
    np.testing.assert_allclose(state.initial_losses, [2.0, 2.0])
    _, w, state = b.update(jnp.array([1.0, 2.0]), grads, state)
    np.testing.assert_allclose(w, [1.025, 0.975], rtol=1e-5)


def test_gradnorm_pushes_weight_to_the_slower_task():
    b = mb.get("gradnorm", alpha=1.5, learning_rate=0.025)
    state = b.init(2)
    grads = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    _, _, state = b.update(jnp.array([1.0, 1.0]), grads, state)  # records L(0)
    upd = jax.jit(b.update)
    for _ in range(50):
        # task 0 trains fast (loss ratio 0.1), task 1 slowly (0.9)
        _, _, state = upd(jnp.array([0.1, 0.9]), grads, state)
    assert state.weights[1] > state.weights[0]
    np.testing.assert_allclose(state.weights.sum(), 2.0, rtol=1e-5)


@pytest.mark.parametrize("alpha,expected", [(1.5, [0.975, 1.025]), (0.5, [1.025, 0.975])])
def test_gradnorm_alpha_sets_the_targets_by_hand(alpha, expected):
    # L(0) = (1, 1), L = (0.5, 2): loss ratios (0.5, 2), relative to their mean 1.25: r = (0.4, 1.6).
    # Gradient norms (1, 3) at w = (1, 1): G = (1, 3), mean 2; targets 2 r^alpha.
    #   alpha = 1.5: targets (0.506, 4.048): G - target = (+, -), dL/dw = (+1, -3)
    #   alpha = 0.5: targets (1.265, 2.530): G - target = (-, +), dL/dw = (-1, +3)
    # Adam's first step moves each weight by lr = 0.025 against its gradient's sign; the sum stays 2.
    b = mb.get("gradnorm", alpha=alpha, learning_rate=0.025)
    state = b.init(2)._replace(initial_losses=jnp.array([1.0, 1.0]), initialised=jnp.array(True))
    grads = jnp.array([[1.0, 0.0], [0.0, 3.0]])
    _, w, state = b.update(jnp.array([0.5, 2.0]), grads, state)
    np.testing.assert_allclose(w, [1.0, 1.0])
    np.testing.assert_allclose(state.weights, expected, rtol=1e-6)
