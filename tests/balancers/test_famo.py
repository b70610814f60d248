"""FAMO: applied weights and the logit update, against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl.balancers.famo import FAMOState, famo


def test_initial_weights_are_normalised_inverse_losses():
    b = famo()
    _, w, _ = b.update(jnp.array([1.0, 3.0]), None, b.init(2))
    # z = (1/2, 1/2): w_i = (z_i / L_i) / sum_j z_j / L_j = (1, 1/3) / (4/3)
    np.testing.assert_allclose(w, [0.75, 0.25], rtol=1e-6)


def test_weights_are_the_gradient_of_the_famo_objective():
    b = famo()
    state = b.init(3)._replace(logits=jnp.array([0.3, -0.2, 0.5]))
    losses = jnp.array([0.7, 2.0, 1.3])
    _, w, _ = b.update(losses, None, state)
    z = jax.nn.softmax(state.logits)

    def objective(l):  # official: sum_i z_i / c * log(L_i + eps), c held fixed
        c = jax.lax.stop_gradient(jnp.sum(z / (l + 1e-8)))
        return jnp.sum(z / c * jnp.log(l + 1e-8))

    np.testing.assert_allclose(w, jax.grad(objective)(losses), rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(w), 1.0, rtol=1e-6)


def test_logit_step_by_hand():
    b = famo()  # lr 0.025, gamma 1e-3
    state = b.init(2)
    new = jax.jit(b.after_update)(state, jnp.array([1.0, 3.0]), jnp.array([0.5, 3.0]))
    # delta = (log 2, 0); z = (1/2, 1/2); grad = z * (delta - z.delta) = (log2/4, -log2/4).
    # xi = 0, so the L2 term is 0; Adam's first step is -lr * sign(grad).
    np.testing.assert_allclose(new.logits, [-0.025, 0.025], atol=1e-6)
    # the task whose loss fell more now gets the smaller weight at equal losses
    _, w, _ = b.update(jnp.array([1.0, 1.0]), None, new)
    np.testing.assert_allclose(w, jax.nn.softmax(jnp.array([-0.025, 0.025])), rtol=1e-6)
    assert w[0] < w[1]
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)


def test_weight_decay_pulls_logits_to_zero_when_losses_do_not_move():
    b = famo(gamma=1e-3)
    state = b.init(2)._replace(logits=jnp.array([1.0, -1.0]))
    new = b.after_update(state, jnp.array([2.0, 2.0]), jnp.array([2.0, 2.0]))
    # delta = 0: gradient gamma * xi, Adam's first step moves by -lr * sign(xi)
    np.testing.assert_allclose(new.logits, [0.975, -0.975], atol=1e-6)


def test_second_step_matches_a_direct_adam_computation():
    b = famo(learning_rate=0.1, gamma=0.01)
    state = b.init(3)
    seq = [([1.0, 2.0, 3.0], [0.9, 1.0, 2.9]), ([0.9, 1.0, 2.9], [0.5, 0.95, 2.8])]
    xi = jnp.zeros(3)
    opt = optax.adam(0.1)
    ost = opt.init(xi)
    for before, after in seq:
        state = b.after_update(state, jnp.array(before), jnp.array(after))
        delta = np.log(np.array(before) + 1e-8) - np.log(np.array(after) + 1e-8)
        z = np.asarray(jax.nn.softmax(xi))
        grad = z * (delta - z @ delta) + 0.01 * np.asarray(xi)
        upd, ost = opt.update(jnp.asarray(grad, jnp.float32), ost)
        xi = optax.apply_updates(xi, upd)
    np.testing.assert_allclose(state.logits, xi, rtol=1e-5, atol=1e-7)


def test_single_task_logit_stays_zero():
    b = famo()
    state = b.after_update(b.init(1), jnp.array([2.0]), jnp.array([1.0]))
    np.testing.assert_allclose(state.logits, [0.0], atol=1e-7)
    assert isinstance(state, FAMOState)


def test_min_losses_shift_the_weights():
    b = famo()
    state = b.init(2)._replace(min_losses=jnp.array([0.5, 0.0]))
    _, w, _ = b.update(jnp.array([1.0, 1.0]), None, state)
    # D = (0.5, 1): w proportional to (2, 1)
    np.testing.assert_allclose(w, [2 / 3, 1 / 3], rtol=1e-6)
