"""GradDrop: gradient sign dropout (Chen et al., NeurIPS 2020).

For task gradients ``g_i`` at some layer, GradDrop computes per coordinate the
sign purity

    P = 1/2 * (1 + sum_i g_i / sum_i |g_i|)          (in [0, 1]),

draws ``U ~ Uniform(0, 1)`` per coordinate, keeps the positive task gradients
where ``P > U`` and the negative ones where ``P < U``,

    M_i = 1[P > U] * 1[g_i > 0] + 1[P < U] * 1[g_i < 0],

and passes on the sum ``sum_i (leak + (1 - leak) M_i) * g_i``. With
``leak = 0`` (the default) every coordinate of the output takes a single sign;
``leak = 1`` gives the plain sum. The result is not a weighted sum of the task
gradients: ``combined`` is the real output, and the returned ``weights`` are
only for logging (the fraction of each task's gradient entries kept, counted
with the leak).

Where it applies (``rep_grad``):

* The paper defines GradDrop on gradients at an activation (the shared
  representation), with leaves ``(T, B, ...)``: the purity uses the gradients
  summed over the batch axis, ``sum_b g_i[b]``, and the mask ``M_i`` (one per
  feature) is shared by all examples of the batch. Build the balancer with
  ``graddrop(rep_grad=True)`` for that mode. ``rep_grad`` is a run fact
  (``Balancer.run_facts``): left ``None`` (the default), the training loop
  (``mtl.train.fit``, the command line) sets it to whether it feeds
  representation gradients (:func:`mtl.balancers.with_run_facts`); used
  stand-alone, ``None`` is the per-parameter mode below.
* On per-parameter gradients (``rep_grad=False`` or ``None``, leaves
  ``(T, ...)``): each parameter entry is one coordinate; every parameter's
  gradient is already a sum over the batch, so no batch sum is taken. This is
  the "GradDrop on parameters" variant; the paper's experiments use the
  activation form. If representation gradients are fed to a balancer built
  with ``rep_grad=False``, every (example, feature) entry is its own
  coordinate: per-example sign dropout, not the paper's batch-level mask.

Deliberate differences from the paper / LibMTL:

* The paper and LibMTL multiply activation gradients by ``sign(A)`` of the
  layer input before the batch sum (the correction for a GradDrop layer placed
  after the activation). The balancer only sees gradients, not activations, so
  no ``sign(A)`` factor is applied.
* A single scalar leak for all tasks (the paper allows one per task).
* ``f(P) = P`` (the paper's default monotone transform).
* ``U`` is drawn from ``[tiny, 1)`` so that ``P = 0`` never equals ``U``; with a
  single task the output is then exactly the task gradient.

Reference: Z. Chen, J. Ngiam, Y. Huang, T. Luong, H. Kretzschmar, Y. Chai,
D. Anguelov. "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient
Sign Dropout." NeurIPS 2020.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, EmptyState, concrete, declare_run_facts


def graddrop_leaf(g: jax.Array, key: jax.Array, leak: float, batch_axis: bool) -> tuple[jax.Array, jax.Array]:
    """GradDrop on one leaf ``g`` of shape ``(T, ...)``.

    Returns the combined leaf (shape ``g.shape[1:]``) and the per-task keep
    factors ``leak + (1 - leak) M`` summed over the leaf's coordinates
    (shape ``(T,)``), for logging.
    """
    dtype = g.dtype
    t = g.shape[0]
    # unrolled over the T tasks: XLA:CPU reductions along the leading axis were
    # slower than these row sums (benchmarks/xla_cpu_pitfalls.py)
    rows = [g[i].astype(jnp.float32) for i in range(t)]
    # The gradient that decides signs: summed over the batch axis in rep mode.
    signs = [jnp.sum(r, axis=0, keepdims=True) if batch_axis else r for r in rows]
    total = sum(signs)
    abs_total = sum(jnp.abs(x) for x in signs)
    purity = 0.5 * (1.0 + total / jnp.where(abs_total > 0, abs_total, 1.0))
    u = jax.random.uniform(key, purity.shape, jnp.float32, minval=jnp.finfo(jnp.float32).tiny, maxval=1.0)
    up, down = purity > u, purity < u
    out, kept = 0.0, []
    for r, x in zip(rows, signs):
        mask = (up & (x > 0)) | (down & (x < 0))
        keep = leak + (1.0 - leak) * mask.astype(jnp.float32)  # (1, ...) or (...)
        out = out + keep * r
        kept.append(jnp.sum(jnp.broadcast_to(keep, r.shape)))
    out, kept = out.astype(dtype), jnp.stack(kept)
    return out, kept


def graddrop(*, leak: float = 0.0, rep_grad: bool | None = None) -> Balancer:
    """GradDrop.

    Args:
      leak: fraction of every task gradient passed through regardless of the
        mask (paper and LibMTL default 0).
      rep_grad: True when the train step feeds gradients at the shared
        representation (leaves ``(T, B, ...)``): the sign purity is then taken
        from batch-summed gradients and the mask is shared over the batch, as
        in the paper. False: per-parameter gradients, coordinate by coordinate.
        None (default): a run fact, filled in by the training loop; the
        per-parameter mode when used stand-alone.

    Returns:
      A :class:`Balancer` with ``grads="shared"``; ``update`` returns
      ``(combined, kept_fraction, state)``; ``key`` is required.
    """
    if concrete(leak) and not 0.0 <= leak <= 1.0:
        raise ValueError(f"leak must be in [0, 1], got {leak}")
    hparams = dict(leak=leak, rep_grad=rep_grad)
    batch_mode = bool(rep_grad)

    def init(num_tasks: int) -> EmptyState:
        del num_tasks
        return EmptyState()

    def update(losses, task_grads, state, *, key):
        del losses
        leaves, treedef = jax.tree_util.tree_flatten(task_grads)
        if batch_mode and any(leaf.ndim < 2 for leaf in leaves):
            raise ValueError("graddrop(rep_grad=True) needs leaves shaped (T, batch, ...)")
        keys = jax.random.split(key, len(leaves))
        outs, kept, count = [], 0.0, 0
        for leaf, k in zip(leaves, keys):
            out, kept_leaf = graddrop_leaf(leaf, k, leak, batch_mode)
            outs.append(out)
            kept = kept + kept_leaf
            count += leaf[0].size
        weights = kept / max(count, 1)
        return jax.tree_util.tree_unflatten(treedef, outs), weights, state

    return declare_run_facts(Balancer(init=init, update=update, grads="shared", rep_grad=True, name="graddrop"),
                             graddrop, hparams, ("rep_grad",))
