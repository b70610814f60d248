"""ExcessMTL: robust multi-task learning with excess risks (He et al., ICML 2024).

Task weights follow the tasks' *excess* risks (loss minus the unknown Bayes
risk) rather than their losses, so that tasks with large irreducible noise are
not over-weighted. The excess risk of task ``i`` is estimated by a second-order
expansion around the optimum with a diagonal Hessian approximated, as in
AdaGrad, by the root of the accumulated squared gradients:

    a_i <- a_i + g_i * g_i                                (elementwise)
    e_i  = g_i^T diag(1 / sqrt(a_i + 1e-7)) g_i            (excess-risk estimate)

and the weights take a multiplicative-weights (exponentiated-gradient) step on
the estimates relative to their first value:

    w_i <- w_i exp(eta e_i / e_i^(0)),    w <- T w / sum_j w_j,

with ``w = 1`` at the first step (where ``e^(0)`` is recorded). The shared update
is the weighted sum ``d = sum_i w_i g_i`` (the gradient of ``sum_i w_i L_i``).

The accumulator ``a`` has the shape of the task gradients, which ``init(num_tasks)``
does not know. Two modes:

* ``init(num_tasks, grads_like=tree)`` (the method as published): ``tree`` is a
  pytree shaped like ONE task's gradient (arrays or ``jax.ShapeDtypeStruct``);
  the state holds ``a`` with leaves ``(T, *leaf.shape)``. The train step must pass it.
* ``init(num_tasks)`` (fallback; what the contract test exercises): an isotropic
  Hessian approximation, one accumulator per task, ``s_i <- s_i + |g_i|^2`` and
  ``e_i = |g_i|^2 / sqrt(s_i + 1e-7)``. (With ``a_i`` replaced by its mean over
  the ``D`` coordinates this is the formula above up to the factor ``sqrt(D)``,
  which cancels in ``e_i / e_i^(0)``.)

Default ``robust_step_size = 1e-2`` (LibMTL / the official code).

Not defined on representation gradients here (``rep_grad=False``): the
accumulator would follow the representation's batch-dependent shape (LibMTL
sums the representation gradients over the batch instead).

Deliberate differences: ``e^(0)`` is recorded per task at the first step where
it is positive (the official code records it at the first step and would
divide by zero if a task's first gradient vanished); the multiplicative step
is computed with the maximum subtracted in the exponent (same weights after
the renormalisation, no overflow); the state keeps the root of the
accumulated squares, ``r_i = sqrt(a_i)``, updated as ``r_i <- hypot(r_i, g_i)``,
and ``e_i = sum |g_i| (|g_i| / hypot(r_i, sqrt(1e-7)))`` (the same numbers, but
gradients of 1e20 or more no longer overflow float32's squares).

Reference: Y. He, S. Zhou, G. Zhang, H. Yun, Y. Xu, B. Zeng, T. Chilimbi,
H. Zhao. "Robust Multi-Task Learning with Excess Risks." ICML 2024.
Official code: github.com/yifei-he/ExcessMTL.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, task_norms, weighted_sum


class ExcessMTLState(NamedTuple):
    loss_weight: jax.Array  # (T,) current weights, sum to T
    initial_excess: jax.Array  # (T,) e_i^(0); 0 until recorded
    grad_rss: Any  # pytree of (T, ...) root of the accumulated squared gradients, sqrt(a), or None (fallback)
    norm_rss: jax.Array  # (T,) root of the accumulated squared gradient norms (fallback only)


def excess_mtl(*, robust_step_size: float = 1e-2) -> Balancer:
    """ExcessMTL.

    Args:
      robust_step_size: step size ``eta`` of the multiplicative weight update.

    Returns:
      A :class:`Balancer` whose ``init(num_tasks, grads_like=None)`` takes the
      optional gradient template described in the module docstring.
    """

    def init(num_tasks: int, grads_like: Any | None = None) -> ExcessMTLState:
        acc = None
        if grads_like is not None:
            acc = jax.tree_util.tree_map(lambda x: jnp.zeros((num_tasks, *x.shape), jnp.float32), grads_like)
        zeros = jnp.zeros((num_tasks,), jnp.float32)
        return ExcessMTLState(jnp.ones((num_tasks,), jnp.float32), zeros, acc, zeros)

    def update(losses, task_grads, state, *, key=None):
        del losses, key
        eps_root = jnp.sqrt(jnp.float32(1e-7))
        if state.grad_rss is not None:
            rss = jax.tree_util.tree_map(lambda r, g: jnp.hypot(r, g.astype(jnp.float32)), state.grad_rss, task_grads)

            def leaf_excess(r, g):
                g = jnp.abs(g.astype(jnp.float32))
                return jnp.sum((g * (g / jnp.hypot(r, eps_root))).reshape(g.shape[0], -1), axis=1)

            excess = sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf_excess, rss, task_grads)))
            norm_rss = state.norm_rss
        else:
            rss = None
            norms = task_norms(task_grads)
            norm_rss = jnp.hypot(state.norm_rss, norms)
            excess = norms * (norms / jnp.hypot(norm_rss, eps_root))
        t = excess.shape[0]
        recorded = state.initial_excess > 0
        ratio = jnp.where(recorded, excess / jnp.where(recorded, state.initial_excess, 1.0), 0.0)
        logits = robust_step_size * ratio
        lw = state.loss_weight * jnp.exp(logits - jnp.max(logits))
        lw = t * lw / jnp.sum(lw)
        initial = jnp.where(recorded, state.initial_excess, excess)
        return weighted_sum(task_grads, lw), lw, ExcessMTLState(lw, initial, rss, norm_rss)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, init_takes_grads_like=True,
                    name="excess_mtl")
