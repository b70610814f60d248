"""Every registered balancer inside the real jitted train step, in both gradient modes, with a
user's model plugged in by import path (experiments/models/dcn_v2.py, not one of ours)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.models as mm
from mtl.train.step import grads_template, init_train_state, make_train_step

NAMES = sorted(mb.REGISTRY)


def _batch(k, t=3, b=8):
    rng = np.random.default_rng(0)
    one = {"numeric": jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
           "categorical": jnp.asarray(rng.integers(0, 4, (b, 1)), jnp.int32),
           "labels": jnp.asarray(rng.integers(0, 2, (b, t)), jnp.float32)}
    return one if k == 1 else jax.tree_util.tree_map(lambda x: jnp.stack([x] * k), one)


@pytest.mark.parametrize("name", NAMES)
def test_balancer_trains_in_the_step(name):
    b = mb.with_run_facts(mb.get(name), steps_per_epoch=3)  # as fit() binds it (DWA, STCH)
    model = mm.get("experiments.models.dcn_v2:DCNv2", num_tasks=3, num_numeric=3, vocab_sizes=(4,), embed_dim=2,
                   cross_layers=1, deep_hidden=(4,), tower_hidden=(2,))
    opt = optax.sgd(0.1)
    batch = _batch(b.num_batches)
    modes = [False] + ([True] if b.rep_grad else [])
    for rep in modes:
        step = jax.jit(make_train_step(model, b, opt, ("binary",) * 3, rep_grad=rep))
        template = None
        if b.init_takes_grads_like:  # gradient-shaped state: the method as published
            one = batch if b.num_batches == 1 else jax.tree_util.tree_map(lambda x: x[0], batch)
            template = grads_template(model, model.init(jax.random.key(0)), one, rep_grad=rep)
        state = init_train_state(model, b, opt, jax.random.key(0), grads_like=template)
        p0 = state.params
        for _ in range(3):
            state, out = step(state, batch)
        assert step._cache_size() == 1
        assert np.all(np.isfinite(np.asarray(out["losses"]))) and np.all(np.isfinite(np.asarray(out["weights"])))
        leaves = jax.tree_util.tree_leaves(state.params)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves), (name, rep)
        moved = [not np.allclose(a, c) for a, c in zip(jax.tree_util.tree_leaves(p0["shared"]),
                                                       jax.tree_util.tree_leaves(state.params["shared"]))]
        assert any(moved), (name, rep)
    if not b.rep_grad:
        with pytest.raises(ValueError, match="representation"):
            make_train_step(model, b, opt, ("binary",) * 3, rep_grad=True)
