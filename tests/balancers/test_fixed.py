"""fixed: constant task weights applied as one backward pass of the weighted loss sum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.models as mm
from mtl.config import ConfigError, load_config_file, resolve, validate
from mtl.train import init_train_state, make_train_step, task_losses

KINDS = ("binary", "regression")


def _setup():
    m = mm.get("shared_bottom", num_tasks=2, num_numeric=4, vocab_sizes=(3, 5), embed_dim=2)
    rng = np.random.default_rng(0)
    batch = {"numeric": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32),
             "categorical": jnp.asarray(np.stack([rng.integers(0, 3, 16), rng.integers(0, 5, 16)], 1), jnp.int32),
             "labels": jnp.asarray(np.stack([rng.integers(0, 2, 16), rng.normal(size=16)], 1), jnp.float32)}
    return m, batch


def test_step_gradient_is_the_weighted_sum_of_task_gradients():
    m, batch = _setup()
    b = mb.get("fixed", weights=(0.3, 0.7))
    opt = optax.sgd(1.0)
    state = init_train_state(m, b, opt, jax.random.key(0))
    new, out = jax.jit(make_train_step(m, b, opt, KINDS))(state, batch)
    key = jax.random.split(jax.random.split(state.key, 3)[1])[0]  # the model key the step uses

    def task_grad(t):
        return jax.grad(lambda p: task_losses(m.apply(p, batch["numeric"], batch["categorical"], train=True, key=key),
                                              batch["labels"], KINDS)[t])(state.params)

    g0, g1 = task_grad(0), task_grad(1)
    np.testing.assert_allclose(out["weights"], [0.3, 0.7], rtol=1e-6)
    for p, q, a, c in zip(*map(jax.tree_util.tree_leaves, (state.params, new.params, g0, g1))):
        np.testing.assert_allclose(p - q, 0.3 * a + 0.7 * c, rtol=1e-4, atol=1e-6)  # sgd(1): p - p' = grad


def test_empty_weights_are_all_ones_and_a_wrong_length_names_the_option():
    b = mb.get("fixed")
    np.testing.assert_array_equal(b.update(jnp.array([2.0, 5.0, 1.0]), None, b.init(3))[1], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="balancer.hparams.weights has 3 entries for 2 tasks"):
        mb.get("fixed", weights=(0.2, 0.3, 0.5)).init(2)
    with pytest.raises(ValueError, match="non-negative"):
        mb.get("fixed", weights=(0.5, -0.1))


def test_config_types_a_comma_list_as_a_float_tuple():
    c = resolve(load_config_file("experiments/configs/census_income.py:group1,test_split,mmoe"),
                [("balancer.name", "fixed"), ("balancer.hparams.weights", "0.3,0.7")])
    assert tuple(c.balancer.hparams.weights) == (0.3, 0.7)
    assert all(isinstance(x, float) for x in c.balancer.hparams.weights)
    validate(c)
    with pytest.raises(ConfigError, match="weights"):
        resolve(load_config_file("experiments/configs/census_income.py:group1,test_split,mmoe"),
                [("balancer.name", "fixed"), ("balancer.hparams.weights", "0.3,abc")])
