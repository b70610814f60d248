"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022).

The update ``d = sum_i alpha_i g_i`` is the Nash bargaining solution of the
tasks over the ball of updates: ``d`` maximises ``sum_i log(g_i^T d)``, which
holds (Sec. 3) when

    (G alpha)_i = 1 / alpha_i,     alpha_i > 0,     G = J J^T,

i.e. every task's directional derivative is inversely proportional to its
weight. Then ``|d|^2 = alpha^T G alpha = T`` whatever the gradient scale, and the
official code clips the shared gradient to norm ``max_norm`` (default 1).

The official code solves the condition with a sequence of convex problems in
cvxpy (``optim_niter = 20`` ECOS solves, warm-started from the previous step's
weights). Here it is solved inside jit on the Gramian by
:func:`mtl.balancers.base.alpha_fair_weights` with ``alpha = 1``: Newton's
method on the strictly convex ``0.5 a^T G a - sum_i log a_i`` (whose stationary
point is exactly the condition above), ``optim_niter`` damped Newton steps
warm-started on the ray of the previous weights. Like the official code the
Gramian is normalised by its Frobenius norm for the solve and the weights are
returned for the original scale.

``update_weights_every = k > 1`` reuses the previous weights on the steps in
between (state: the weights and a step counter).

Args mirror the official ``NashMTL(max_norm=1.0, update_weights_every=1,
optim_niter=20)``.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL and
the official code): the bargaining and the ``max_norm`` ball are over the
shared parameters' update.

Deliberate differences: Newton's method instead of the sequential cvxpy
programs (same fixed point; no host synchronisation); a tiny ridge
``1e-8 |G|_F I`` keeps the solution finite when some non-negative combination
of the gradients vanishes (e.g. opposite gradients), where no bargaining
solution exists. The official code weights the task losses by ``alpha`` (so
task-specific heads get ``alpha_i``-scaled gradients too); here ``combined``
is the shared gradient and the heads get what the train step gives them.

Reference: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi,
G. Chechik, E. Fetaya. "Multi-Task Learning as a Bargaining Game." ICML 2022.
Official code: github.com/AvivNavon/nash-mtl.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, alpha_fair_weights, clip_by_global_norm, gramian, weighted_sum


class NashMTLState(NamedTuple):
    alpha: jax.Array  # (T,) the latest bargaining weights (warm start / reuse)
    step: jax.Array  # () int32, number of updates so far


def nash_weights(gram: jax.Array, *, num_iters: int = 20, init=None) -> jax.Array:
    """The Nash bargaining weights: ``alpha > 0`` with ``(G alpha)_i alpha_i = 1``."""
    return alpha_fair_weights(gram, alpha=1.0, num_iters=num_iters, init=init)


def nash_mtl(*, max_norm: float = 1.0, update_weights_every: int = 1, optim_niter: int = 20) -> Balancer:
    """Nash-MTL.

    Args:
      max_norm: clip the combined gradient to this global norm (``<= 0``: no clipping).
      update_weights_every: recompute the weights every this many steps.
      optim_niter: Newton steps of the solver.

    Returns:
      A :class:`Balancer`; ``update`` returns ``clip(sum_i alpha_i g_i, max_norm)``
      and ``alpha``.
    """
    if update_weights_every < 1:
        raise ValueError("update_weights_every must be >= 1")

    def init(num_tasks: int) -> NashMTLState:
        return NashMTLState(jnp.ones((num_tasks,), jnp.float32), jnp.zeros((), jnp.int32))

    def update(losses, task_grads, state, *, key=None):
        del losses, key
        gram = gramian(task_grads).astype(jnp.float32)
        fresh = nash_weights(gram, num_iters=optim_niter, init=state.alpha)
        recompute = (state.step % update_weights_every) == 0
        alpha = jnp.where(recompute, fresh, state.alpha)
        combined, _ = clip_by_global_norm(weighted_sum(task_grads, alpha), max_norm)
        return combined, alpha, NashMTLState(alpha, state.step + 1)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, name="nash_mtl")
