"""The jit-compiled multi-task train step.

One pure function per (model, balancer): ``state, out = step(state, batch)``,
where the train state is one explicit pytree (parameters, optimizer state,
balancer state, step counter, PRNG key) and ``out`` holds the step's task
losses, task weights and optional gradient diagnostics. No host
synchronisation happens inside.

How gradients are taken depends on what the balancer needs
(:attr:`mtl.balancers.Balancer.grads`):

* ``none`` (loss weighting): one forward pass, the balancer turns the losses
  into weights, one pullback of ``sum_i w_i L_i``.
* ``shared``: one forward pass and T pullbacks (``vmap`` of the VJP over the
  rows of the identity) give every task's gradient of the *balanced*
  parameters (by default the dense shared layers; embeddings too when
  ``balance_embeddings``). The balancer combines them. All other parameters
  get the sum of the task gradients: each tower its own task's gradient,
  embeddings the plain sum.
* ``shared`` with ``rep_grad=True``: the T pullbacks stop at the shared
  representation ``z`` (the bottom's or the experts' output); the balancer
  combines the per-task gradients of ``z`` and one pullback sends the combined
  gradient through the shared network (LibMTL's ``rep_grad``; MGDA-UB).
* ``last_shared``: T pullbacks restricted to the last shared layer feed the
  balancer's weights; the update is one pullback of the weighted loss (GradNorm).

Balancers with ``num_batches = K > 1`` get K batches per step (the first is the
step's batch, the others are drawn by the loop); balancers with an
``after_update`` hook get the losses recomputed on the same batch after the
parameter update (FAMO).

Numerical faults are caught inside the program: a step whose task losses,
gradient or balancer weights are not all finite is not applied (parameters,
optimizer and balancer state stay as they were; the select is fused into the
update's elementwise ops) and says so in its outputs (``finite``,
``loss_finite``), so the loop can stop or skip without a host sync per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtl.balancers.base import Balancer, gramian, sum_tasks, weighted_sum
from mtl.models.base import Model, default_task_losses

PyTree = Any


class TrainState(NamedTuple):
    """Everything training carries from step to step, as one pytree."""

    params: PyTree
    opt_state: PyTree
    balancer_state: PyTree
    step: jax.Array
    key: jax.Array


def grads_template(model: Model, params: PyTree, batch: dict, *, rep_grad: bool = False,
                   balance_embeddings: bool = False, shared_mask_fn=None) -> PyTree:
    """Shapes of one task's gradient as the balancer will see it: the balanced
    parameters, or the shared representation ``z`` of a batch with ``rep_grad``."""
    if rep_grad:
        def encode(p, b):
            h = model.embed(p["embed"], b["numeric"], b["categorical"])
            return model.encode(p["shared"], h)

        return jax.eval_shape(encode, params, batch)
    sel, _ = partition(params, default_shared_mask(params, balance_embeddings, shared_mask_fn))
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), sel)


def init_train_state(model: Model, balancer: Balancer, optimizer: optax.GradientTransformation,
                     key: jax.Array, *, grads_like: PyTree = None) -> TrainState:
    """Initial parameters, optimizer state and balancer state.

    ``grads_like`` (see :func:`grads_template`) is passed to balancers whose
    ``init`` takes it; without it they fall back to their template-free form.
    """
    k_init, k_run = jax.random.split(key)
    params = model.init(k_init)
    if grads_like is not None and balancer.init_takes_grads_like:
        bstate = balancer.init(model.num_tasks, grads_like=grads_like)
    else:
        bstate = balancer.init(model.num_tasks)
    return TrainState(params, optimizer.init(params), bstate, jnp.zeros((), jnp.int32), k_run)


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def task_losses(outputs: jax.Array, labels: jax.Array, kinds: Sequence[str]) -> jax.Array:
    """Mean loss of each task over the batch ``(T,)``: sigmoid cross-entropy on
    logits for binary tasks, squared error for regression tasks (the default of
    models that do not define their own losses)."""
    return default_task_losses(outputs, labels, kinds)


# ---------------------------------------------------------------------------
# Parameter partitions (equinox-style: masked-out leaves become None)
# ---------------------------------------------------------------------------


def _is_none(x):
    return x is None


def partition(tree: PyTree, mask: PyTree) -> tuple[PyTree, PyTree]:
    """Splits ``tree`` into (selected, rest) by a boolean ``mask`` of the same structure."""
    sel = jax.tree_util.tree_map(lambda x, m: x if m else None, tree, mask)
    rest = jax.tree_util.tree_map(lambda x, m: None if m else x, tree, mask)
    return sel, rest


def combine(a: PyTree, b: PyTree) -> PyTree:
    """Inverse of :func:`partition`."""
    return jax.tree_util.tree_map(lambda x, y: y if x is None else x, a, b, is_leaf=_is_none)


def default_shared_mask(params: PyTree, balance_embeddings: bool = False,
                        shared_mask_fn: Callable[[PyTree], PyTree] | None = None) -> PyTree:
    """The parameters a balancer acts on: the dense shared layers (bottom,
    experts, shared gates), plus the embedding tables when asked;
    ``shared_mask_fn(params)`` instead when given."""
    if shared_mask_fn is not None:
        return shared_mask_fn(params)
    return {
        "embed": jax.tree_util.tree_map(lambda _: bool(balance_embeddings), params["embed"]),
        "shared": jax.tree_util.tree_map(lambda _: True, params["shared"]),
        "heads": jax.tree_util.tree_map(lambda _: False, params["heads"]),
    }


def stack_trees(trees: Sequence[PyTree]) -> PyTree:
    """Stacks same-structured pytrees leaf by leaf along a new leading axis."""
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


def _pullback_rows(pull, eye):
    """``pull(e_i)`` for every row of ``eye``, stacked along a new leading axis.

    A loop of pullbacks, not ``jax.vmap(pull)``: vmap was slower on CPU
    (``python -m benchmarks.xla_cpu_pitfalls``).
    """
    return stack_trees([pull(eye[i]) for i in range(eye.shape[0])])


def _has_leaves(tree) -> bool:
    return len(jax.tree_util.tree_leaves(tree)) > 0


def all_finite(tree: PyTree) -> jax.Array:
    """``True`` when every floating-point leaf of ``tree`` is finite (one fused reduction per leaf)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    out = jnp.array(True)
    for x in leaves:
        out = out & jnp.all(jnp.isfinite(x))
    return out


def select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    """``pred ? on_true : on_false`` leaf by leaf (XLA fuses the select into the producers)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


# ---------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------


def gradient_diagnostics(task_grads: PyTree) -> dict[str, jax.Array]:
    """Per-task gradient norms ``(T,)`` and pairwise cosine similarities ``(T, T)``."""
    g = gramian(task_grads)
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(g), 0.0))
    denom = jnp.outer(norms, norms)
    cos = jnp.where(denom > 0, g / jnp.where(denom > 0, denom, 1.0), 0.0)
    return {"grad_norms": norms, "grad_cos": cos}


# ---------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------


def make_train_step(
    model: Model,
    balancer: Balancer,
    optimizer: optax.GradientTransformation,
    task_kinds: Sequence[str],
    *,
    rep_grad: bool = False,
    balance_embeddings: bool = False,
    shared_mask_fn: Callable[[PyTree], PyTree] | None = None,
    diagnostics: bool = False,
    weight_heads: bool = False,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """Builds the pure train step ``step(state, batch) -> (state, out)``.

    Args:
      model: the multi-task model.
      balancer: the gradient-balancing method.
      optimizer: an optax transformation for all parameters.
      task_kinds: ``"binary"`` or ``"regression"`` per task.
      rep_grad: take per-task gradients at the shared representation instead of
        the shared parameters (only for balancers with ``rep_grad=True``).
      balance_embeddings: include the embedding tables in the balanced set.
      shared_mask_fn: custom filter ``params -> bool mask`` of the balanced
        parameters (overrides the default and ``balance_embeddings``).
      diagnostics: also return per-task gradient norms and pairwise cosines
        (of the balanced parameters, or of the representation with ``rep_grad``);
        costs T pullbacks for loss-weighting methods that would not need them.
      weight_heads: for gradient-based methods, scale each task's gradient of
        the unbalanced parameters (towers, per-task gates, embeddings by
        default) by the balancer's weight ``w_i`` instead of using the plain
        sum, as the official Nash-MTL and FairGrad code does (its update is
        ``backward(sum_i w_i L_i)``). Default False, as LibMTL.

    ``batch`` is a dict with ``numeric (B, F)``, ``categorical (B, C)``,
    ``labels (B, T)``; with ``balancer.num_batches = K > 1`` every array has a
    leading axis ``K``. ``active=False`` computes the step but keeps the state
    (a finished seed, a halted call). ``out`` has ``losses (T,)``, ``weights
    (T,)``, ``finite`` (losses, weights and gradient all finite: the update was
    applied when active), ``loss_finite (T,)`` and, with diagnostics,
    ``grad_norms (T,)`` and ``grad_cos (T, T)``.
    """
    kinds = tuple(task_kinds)
    if model.losses is None and len(kinds) != model.num_tasks:
        raise ValueError(f"model {model.name!r} has {model.num_tasks} tasks but the data has {len(kinds)}")
    t = model.num_tasks
    if balancer.grads == "last_shared" and model.last_shared is None:
        raise ValueError(f"balancer {balancer.name!r} needs the model's last shared layer, but model "
                         f"{model.name!r} does not name it (define last_shared_layers() on the module)")
    if rep_grad and not balancer.rep_grad:
        raise ValueError(f"balancer {balancer.name!r} is not defined on representation gradients (rep_grad=True)")
    if rep_grad and balancer.grads == "none" and not diagnostics:
        rep_grad = False  # nothing to take at the representation: plain loss weighting
    k_batches = balancer.num_batches
    eye = jnp.eye(t, dtype=jnp.float32)

    def loss_fn(params, batch, key):
        out = model.apply(params, batch["numeric"], batch["categorical"], train=True, key=key)
        return model.task_losses(out, batch["labels"], kinds)

    def nothing_shared():
        return ValueError(f"model {model.name!r} has no shared parameters to balance; use balancer 'ew' "
                          "(or another loss-weighting method)")

    def per_task_param_grads(params, batch, key, mask):
        """Losses ``(T,)``, per-task gradients ``(T, ...)`` of the parameters
        selected by ``mask``, and ``finish(combined, rest_weights) -> grads``,
        which adds the unbalanced parameters' gradients (their task sum, or
        their ``rest_weights``-weighted sum) to the combined one."""
        bal, rest = partition(params, mask)
        if not _has_leaves(bal):
            raise nothing_shared()
        losses, pull = jax.vjp(lambda b, r: loss_fn(combine(b, r), batch, key), bal, rest)
        jb, jr = _pullback_rows(pull, eye)

        def finish(combined, rest_weights):
            rest_grads = sum_tasks(jr) if rest_weights is None else weighted_sum(jr, rest_weights)
            return combine(combined, rest_grads)

        return losses, jb, finish

    def per_task_rep_grads(params, batch, key):
        """Losses ``(T,)``, per-task gradients ``(T, ...)`` of the shared
        representation ``z``, and ``finish(combined, rest_weights) -> grads``,
        which sends the combined gradient of ``z`` through the shared network
        in one pullback and adds the task-specific parameters' gradients."""
        k1, k2 = jax.random.split(key)
        emb_shared = {"embed": params["embed"], "shared": params["shared"]}
        if not _has_leaves(emb_shared):  # the representation is the raw input: nothing to send a gradient to
            raise nothing_shared()

        def encode(p):
            h = model.embed(p["embed"], batch["numeric"], batch["categorical"])
            return model.encode(p["shared"], h, train=True, key=k1), h

        (z, h), pull_enc = jax.vjp(encode, emb_shared)

        def decode(heads, z, h):
            out = model.decode(heads, z, h, train=True, key=k2)
            return model.task_losses(out, batch["labels"], kinds)

        losses, pull_dec = jax.vjp(decode, params["heads"], z, h)
        g_heads, g_z, g_h = _pullback_rows(pull_dec, eye)

        def finish(combined, rest_weights):
            total = sum_tasks if rest_weights is None else (lambda g: weighted_sum(g, rest_weights))
            (g_emb_shared,) = pull_enc((combined, total(g_h)))
            return {"embed": g_emb_shared["embed"], "shared": g_emb_shared["shared"], "heads": total(g_heads)}

        return losses, g_z, finish

    def one_batch(tree, i):
        return jax.tree_util.tree_map(lambda x: x[i], tree)

    def step(state: TrainState, batch: dict, active: jax.Array | bool = True) -> tuple[TrainState, dict]:
        key, k_model, k_bal = jax.random.split(state.key, 3)
        params = state.params
        out: dict[str, jax.Array] = {}
        first_batch = one_batch(batch, 0) if k_batches > 1 else batch

        if balancer.grads == "none" and not diagnostics:
            losses, pull = jax.vjp(lambda p: loss_fn(p, first_batch, k_model), params)
            lb = jnp.stack([losses] * k_batches) if k_batches > 1 else losses
            _, weights, bstate = balancer.update(lb, None, state.balancer_state, key=k_bal)
            (grads,) = pull(weights.astype(losses.dtype))

        elif balancer.grads == "last_shared":
            mask = {
                "embed": jax.tree_util.tree_map(lambda _: False, params["embed"]),
                "shared": model.last_shared(params["shared"]),
                "heads": jax.tree_util.tree_map(lambda _: False, params["heads"]),
            }
            bal, rest = partition(params, mask)
            losses, pull = jax.vjp(lambda b, r: loss_fn(combine(b, r), first_batch, k_model), bal, rest)
            jb, _ = _pullback_rows(pull, eye)  # XLA drops the unused rest: pullbacks stop at the layer
            _, weights, bstate = balancer.update(losses, jb, state.balancer_state, key=k_bal)
            grads = combine(*pull(weights.astype(losses.dtype)))
            if diagnostics:
                out.update(gradient_diagnostics(jb))

        else:  # per-task gradients of the balanced parameters, or of the representation
            if rep_grad:
                per_task = per_task_rep_grads
            else:
                mask = default_shared_mask(params, balance_embeddings, shared_mask_fn)
                per_task = lambda p, b, k: per_task_param_grads(p, b, k, mask)  # noqa: E731
            if k_batches > 1:  # batch 0 gives the update, the others feed the balancer
                parts = [per_task(params, one_batch(batch, i), k_model if i == 0 else jax.random.fold_in(k_model, i))
                         for i in range(k_batches)]
                losses, jac, finish = parts[0]
                losses_in, jac_in = jnp.stack([p[0] for p in parts]), stack_trees([p[1] for p in parts])
            else:
                losses, jac, finish = per_task(params, first_batch, k_model)
                losses_in, jac_in = losses, jac
            loss_weighting = balancer.grads == "none"  # only here when diagnostics were asked for
            combined, weights, bstate = balancer.update(losses_in, None if loss_weighting else jac_in,
                                                        state.balancer_state, key=k_bal)
            if combined is None:
                combined = weighted_sum(jac, weights)
            grads = finish(combined, weights if loss_weighting or weight_heads else None)
            if diagnostics:
                out.update(gradient_diagnostics(jac))

        updates, opt_state = optimizer.update(grads, state.opt_state, params)
        new_params = optax.apply_updates(params, updates)
        if balancer.after_update is not None:
            losses_after = loss_fn(new_params, first_batch, k_model)
            bstate = balancer.after_update(bstate, losses, losses_after)
        loss_finite = jnp.isfinite(losses)
        finite = jnp.all(loss_finite) & all_finite(weights) & all_finite(grads)
        apply = finite & active
        new_params, opt_state, bstate = select_tree(apply, (new_params, opt_state, bstate),
                                                    (params, state.opt_state, state.balancer_state))
        out["losses"] = losses
        out["weights"] = weights.astype(jnp.float32)
        out["finite"] = finite
        out["loss_finite"] = loss_finite
        return TrainState(new_params, opt_state, bstate, state.step + 1, key), out

    return step
