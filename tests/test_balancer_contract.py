"""The contract every registered balancer must honour.

Adding a method: register it in ``mtl.balancers.REGISTRY``; it is picked up here
automatically (every registered name is run through every check). What a
method must return depends on the gradients it consumes (``Balancer.grads``),
and each check states the expectation for each kind:

* ``"none"`` (losses only) and ``"last_shared"`` (GradNorm: gradients of the
  last shared layer, used only to find the weights): ``combined is None``;
  ``weights`` are applied to the losses by the train step;
* ``"shared"``: ``combined`` is the combined gradient, a pytree shaped like one
  task's gradient.

Run facts (``steps_per_epoch``, ``rep_grad``) are bound as the training loop
binds them (one update per epoch here, so DWA's and STCH's epoch logic runs).
One compiled update per (method, T), shared by the checks.
"""

import functools
import inspect
import types
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mtl.balancers as mb
from mtl.balancers.base import GRAD_KINDS

NAMES = sorted(mb.REGISTRY)
RUN_FACTS = {"steps_per_epoch": 1, "rep_grad": False}
RETURNS_COMBINED = {"none": False, "last_shared": False, "shared": True}


@functools.cache
def _balancer(name):
    """The balancer with its run facts bound, and one jitted update (a compilation per input shape)."""
    b = mb.with_run_facts(mb.get(name), **RUN_FACTS)
    return b, jax.jit(lambda losses, grads, state, key: b.update(losses, grads, state, key=key))


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
    return losses, (tree if b.needs_grads else None)


def _random(rng, t):
    return rng.normal(size=(t, 5))


def _zero(rng, t):
    return np.zeros((t, 5))


def _identical(rng, t):
    return np.repeat(rng.normal(size=(1, 5)), t, axis=0)


def _opposite(rng, t):
    g = rng.normal(size=(1, 5))
    return np.concatenate([g if i % 2 == 0 else -g for i in range(t)])


def _check_outputs(b, t, grads, combined, weights, state, what):
    """The per-kind expectations on one update's outputs, and finiteness."""
    assert b.grads in GRAD_KINDS, what
    assert weights.shape == (t,) and jnp.issubdtype(weights.dtype, jnp.floating), what
    assert np.all(np.isfinite(np.asarray(weights))), what
    if RETURNS_COMBINED[b.grads]:
        one = jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[1 + (b.num_batches > 1):])[0], grads)
        assert jax.tree_util.tree_structure(combined) == jax.tree_util.tree_structure(one), what
        for c, o in zip(jax.tree_util.tree_leaves(combined), jax.tree_util.tree_leaves(one)):
            assert c.shape == o.shape and c.dtype == o.dtype, what
            assert np.all(np.isfinite(np.asarray(c))), what
    else:
        assert combined is None, what
    for leaf in jax.tree_util.tree_leaves(state):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            assert np.all(np.isfinite(leaf)), what
        else:  # step counters, flags
            assert np.issubdtype(leaf.dtype, np.integer) or leaf.dtype == bool, what


@pytest.mark.parametrize("name", NAMES)
def test_jit_no_recompile_and_stable_state(name):
    b, step = _balancer(name)
    t = 3
    state = b.init(t)
    key = jax.random.key(0)
    for i in range(3):
        losses, grads = _inputs(b, t, _random, seed=i)
        combined, weights, new_state = step(losses, grads, state, jax.random.fold_in(key, i))
        if i == 0:
            compiled = step._cache_size()
        assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state), name
        for a, c in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(new_state)):
            assert a.shape == c.shape and a.dtype == c.dtype, name
        _check_outputs(b, t, grads, combined, weights, new_state, name)
        state = new_state
    assert step._cache_size() == compiled, f"{name} recompiled"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", [_zero, _identical, _opposite, _random])
@pytest.mark.parametrize("t", [2, 3])
def test_finite_on_degenerate_gradients(name, kind, t):
    b, step = _balancer(name)
    state = b.init(t)
    key = jax.random.key(1)
    for i in range(2):  # second call exercises a non-initial state
        losses, grads = _inputs(b, t, kind, seed=i)
        combined, weights, state = step(losses, grads, state, jax.random.fold_in(key, i))
        _check_outputs(b, t, grads, combined, weights, state, (name, kind.__name__, i))


@pytest.mark.parametrize("name", NAMES)
def test_single_task_is_plain_gradient_up_to_positive_scale(name):
    b, step = _balancer(name)
    state = b.init(1)
    key = jax.random.key(2)
    for i in range(2):
        losses, grads = _inputs(b, 1, _random, seed=i)
        combined, weights, state = step(losses, grads, state, jax.random.fold_in(key, i))
        if RETURNS_COMBINED[b.grads]:
            # the combined gradient is the task's gradient times a positive number
            if b.num_batches > 1:  # all K batches are equal here: take the first
                grads = jax.tree_util.tree_map(lambda x: x[0], grads)
            g = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree_util.tree_leaves(grads)])
            c = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree_util.tree_leaves(combined)])
            scale = (c @ g) / (g @ g)
            assert scale > 0, name
            np.testing.assert_allclose(c, scale * g, rtol=1e-4, atol=1e-6, err_msg=name)
        else:
            # the train step applies the weight to the one loss: it must be positive
            assert combined is None and float(weights[0]) > 0, name


ALLOWED_TYPES = (bool, int, float, str)


def _allowed(tp) -> bool:
    if tp in ALLOWED_TYPES:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] / X | None is Union[X, None]
        return all(a is type(None) or _allowed(a) for a in args) and type(None) in args
    if origin is tuple:
        return all(a is Ellipsis or _allowed(a) for a in args)
    return False


@pytest.mark.parametrize("name", NAMES)
def test_factory_parameters_can_be_set_from_the_command_line(name):
    """Keyword-only, with a default and a plain type (bool, int, float, str, tuple[...], or
    Optional of those): the command line builds every factory's flags from its signature."""
    factory = mb.REGISTRY[name]
    hints = typing.get_type_hints(factory)
    for p in inspect.signature(factory).parameters.values():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
        assert p.default is not inspect.Parameter.empty, (name, p.name)
        assert p.name in hints and _allowed(hints[p.name]), (name, p.name, hints.get(p.name))


@pytest.mark.parametrize("name", NAMES)
def test_run_facts_are_declared_factory_keywords(name):
    """A method's run facts are keywords of its factory defaulting to None, and binding them
    rebuilds the same method; facts it does not declare change nothing."""
    factory, b = mb.REGISTRY[name], mb.get(name)
    params = inspect.signature(factory).parameters
    for fact in b.run_facts:
        assert fact in params and params[fact].default is None, (name, fact)
    bound = mb.with_run_facts(b, steps_per_epoch=7, rep_grad=True, unknown_fact=3)
    assert (bound.name, bound.grads, bound.num_batches, bound.rep_grad) == (b.name, b.grads, b.num_batches, b.rep_grad)
    assert bound.run_facts == b.run_facts
    if not b.run_facts:
        assert bound is b and b.bind is None, name


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown balancer 'nope'.*pcgrad"):
        mb.get("nope")


def test_bad_hyperparameter_names_the_balancer():
    with pytest.raises(ValueError, match="pcgrad"):
        mb.get("pcgrad", not_a_param=1)
