"""The contract every registered balancer must honour.

Adding a method: register it in ``mtl.balancers.REGISTRY``; it is picked up here
automatically (every registered name is run through every check).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtl.balancers as mb

NAMES = sorted(mb.REGISTRY)


def _inputs(b, t, grads_fn, seed=0):
    """losses and task_grads (a two-leaf pytree) shaped for balancer ``b``."""
    rng = np.random.default_rng(seed)
    losses = jnp.asarray(rng.uniform(0.5, 2.0, size=(t,)), jnp.float32)
    g = grads_fn(rng, t)  # (T, 5)
    tree = {"a": jnp.asarray(g[:, :3].reshape(t, 3), jnp.float32),
            "b": jnp.asarray(g[:, 3:].reshape(t, 1, 2), jnp.float32)}
    k = b.num_batches
    if k > 1:
        losses = jnp.stack([losses] * k)
        tree = jax.tree_util.tree_map(lambda x: jnp.stack([x] * k), tree)
    if not b.needs_grads:
        tree = None
    return losses, tree


def _random(rng, t):
    return rng.normal(size=(t, 5))


def _zero(rng, t):
    return np.zeros((t, 5))


def _identical(rng, t):
    return np.repeat(rng.normal(size=(1, 5)), t, axis=0)


def _opposite(rng, t):
    g = rng.normal(size=(1, 5))
    return np.concatenate([g if i % 2 == 0 else -g for i in range(t)])


def _run(b, losses, grads, state, key):
    return jax.jit(b.update)(losses, grads, state, key=key)


@pytest.mark.parametrize("name", NAMES)
def test_jit_no_recompile_and_stable_state(name):
    b = mb.get(name)
    t = 3
    state = b.init(t)
    step = jax.jit(lambda l, g, s, k: b.update(l, g, s, key=k))
    key = jax.random.key(0)
    for i in range(3):
        losses, grads = _inputs(b, t, _random, seed=i)
        combined, weights, new_state = step(losses, grads, state, jax.random.fold_in(key, i))
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
        for a, c in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new_state)):
            assert a.shape == c.shape and a.dtype == c.dtype, name
        assert weights.shape == (t,)
        if b.needs_grads and b.grads == "shared":
            if combined is not None:
                one = jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[1 + (b.num_batches > 1):])[0], grads)
                assert jax.tree_util.tree_structure(combined) == jax.tree_util.tree_structure(one)
        state = new_state
    assert step._cache_size() == 1, f"{name} recompiled"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", [_zero, _identical, _opposite, _random])
@pytest.mark.parametrize("t", [2, 3])
def test_finite_on_degenerate_gradients(name, kind, t):
    b = mb.get(name)
    state = b.init(t)
    key = jax.random.key(1)
    for i in range(2):  # second call exercises a non-initial state
        losses, grads = _inputs(b, t, kind, seed=i)
        combined, weights, state = _run(b, losses, grads, state, jax.random.fold_in(key, i))
        assert np.all(np.isfinite(np.asarray(weights))), (name, kind.__name__)
        if combined is not None:
            for leaf in jax.tree_util.tree_leaves(combined):
                assert np.all(np.isfinite(np.asarray(leaf))), (name, kind.__name__)
        for leaf in jax.tree_util.tree_leaves(state):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert np.all(np.isfinite(np.asarray(leaf))), (name, kind.__name__)


@pytest.mark.parametrize("name", NAMES)
def test_single_task_is_plain_gradient_up_to_positive_scale(name):
    b = mb.get(name)
    state = b.init(1)
    key = jax.random.key(2)
    for i in range(2):
        losses, grads = _inputs(b, 1, _random, seed=i)
        combined, weights, state = _run(b, losses, grads, state, jax.random.fold_in(key, i))
        if combined is None:
            assert float(weights[0]) > 0, name
        else:
            if b.num_batches > 1:  # all K batches are equal here: take the first
                grads = jax.tree_util.tree_map(lambda x: x[0], grads)
            g = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree_util.tree_leaves(grads)])
            c = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree_util.tree_leaves(combined)])
            scale = (c @ g) / (g @ g)
            assert scale > 0, name
            np.testing.assert_allclose(c, scale * g, rtol=1e-4, atol=1e-6, err_msg=name)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown balancer 'nope'.*pcgrad"):
        mb.get("nope")


def test_bad_hyperparameter_names_the_balancer():
    with pytest.raises(ValueError, match="pcgrad"):
        mb.get("pcgrad", not_a_param=1)
