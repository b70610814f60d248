"""Every model in mtl.models.REGISTRY against the model contract: output shapes, one
compilation per input shape, last_shared_layers() naming real parameters, and training in
the step with every gradient kind (losses only, per-task parameter gradients with and
without rep_grad, the last shared layer). A new registry entry is covered automatically;
give it small sizes in SIZES to keep the suite fast."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.models as mm
from mtl.train import init_train_state, make_train_step

NAMES = sorted(mm.REGISTRY)
SIZES = {
    "single_task": dict(hidden=(5,), tower_hidden=(3,)),
    "shared_bottom": dict(bottom_hidden=(6, 5), tower_hidden=(3,)),
    "omoe": dict(num_experts=2, expert_hidden=(5,), tower_hidden=(3,)),
    "mmoe": dict(num_experts=2, expert_hidden=(5,), tower_hidden=(3,)),
    "cgc": dict(num_shared_experts=1, num_task_experts=1, expert_hidden=(5,), tower_hidden=(3,)),
    "ple": dict(num_shared_experts=1, num_task_experts=1, expert_hidden=(5,), tower_hidden=(3,), num_levels=2),
    "esmm": dict(tower_hidden=(4,)),
    "aitm": dict(tower_hidden=(4,)),
}
TASKS, KINDS = ("click", "conversion"), ("binary", "binary")
VOCAB = (4, 3)
# (balancer, rep_grad): one per gradient kind the step takes
GRAD_KINDS = [("ew", False), ("pcgrad", False), ("pcgrad", True), ("gradnorm", False)]


def _model(name):
    return mm.get(name, num_tasks=2, num_numeric=3, vocab_sizes=VOCAB, task_names=TASKS, embed_dim=2,
                  **SIZES.get(name, {}))


def _batch(n, seed=0):
    """Funnel-consistent labels (a conversion only after a click), so that ESMM/AITM accept them too."""
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.5).astype(np.float32)
    conv = click * (rng.random(n) < 0.5)
    return {"numeric": jnp.asarray(rng.normal(size=(n, 3)), jnp.float32),
            "categorical": jnp.asarray(np.stack([rng.integers(0, v, n) for v in VOCAB], 1), jnp.int32),
            "labels": jnp.asarray(np.stack([click, conv], 1), jnp.float32)}


def _paths(tree):
    return ["/".join(str(getattr(k, "key", k)) for k in p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]


def test_every_registered_model_is_covered():
    assert set(SIZES) == set(mm.REGISTRY), "give the new model small sizes in SIZES"


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_one_compilation_per_shape(name):
    m = _model(name)
    params = m.init(jax.random.key(0))
    assert set(params) == set(mm.PARTS)
    apply = jax.jit(lambda p, num, cat: m.apply(p, num, cat))
    b = _batch(8)
    out = apply(params, b["numeric"], b["categorical"])
    assert out.ndim == 2 and out.shape[0] == 8 and np.all(np.isfinite(out))
    losses = m.task_losses(out, b["labels"], KINDS)
    assert losses.shape == (m.num_tasks,) and np.all(np.isfinite(losses))
    view = m.evaluation(np.asarray(out), np.asarray(b["labels"]), TASKS, KINDS)
    assert view.outputs.shape == (8, len(view.names)) == view.labels.shape and len(view.kinds) == len(view.names)
    b2 = _batch(8, seed=1)
    apply(params, b2["numeric"], b2["categorical"])
    assert apply._cache_size() == 1  # new values, same shape: no recompilation
    b3 = _batch(5)
    assert apply(params, b3["numeric"], b3["categorical"]).shape[0] == 5
    assert apply._cache_size() == 2


@pytest.mark.parametrize("name", NAMES)
def test_last_shared_layers_name_parameters(name):
    m = _model(name)
    shared = _paths(m.init(jax.random.key(0))["shared"])
    layers = getattr(m.module, "last_shared_layers", None)
    if layers is None:
        assert m.last_shared is None
        return
    for prefix in layers():
        assert any(p == prefix or p.startswith(prefix + "/") for p in shared), (prefix, shared)
    mask = m.last_shared(m.init(jax.random.key(0))["shared"])
    assert any(jax.tree_util.tree_leaves(mask))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("balancer,rep_grad", GRAD_KINDS)
def test_trains_in_the_step_with_every_gradient_kind(name, balancer, rep_grad):
    m = _model(name)
    b = mb.get(balancer)
    opt = optax.adam(3e-2)
    nothing_shared = not jax.tree_util.tree_leaves(m.init(jax.random.key(0))["shared"])
    refused = (balancer == "gradnorm" and m.last_shared is None) or (balancer != "ew" and nothing_shared)
    if refused:
        with pytest.raises(ValueError, match=r"last shared layer|no shared parameters|nothing"):
            step = make_train_step(m, b, opt, KINDS, rep_grad=rep_grad)
            step(init_train_state(m, b, opt, jax.random.key(0)), _batch(16))
        return
    step = jax.jit(make_train_step(m, b, opt, KINDS, rep_grad=rep_grad))
    s0 = init_train_state(m, b, opt, jax.random.key(0))
    batch = _batch(16)
    s, losses = s0, []
    for _ in range(6):
        s, out = step(s, batch)
        assert bool(out["finite"])
        losses.append(float(np.sum(out["losses"])))
    assert step._cache_size() == 1
    assert losses[-1] < losses[0], losses
    leaves = jax.tree_util.tree_leaves(s.params)
    assert all(np.all(np.isfinite(x)) for x in leaves)
    changed = {part: any(not np.array_equal(a, c) for a, c in zip(jax.tree_util.tree_leaves(s0.params[part]),
                                                                  jax.tree_util.tree_leaves(s.params[part])))
               for part in mm.PARTS if jax.tree_util.tree_leaves(s0.params[part])}
    assert all(changed.values()), changed
