"""Nash-MTL: multi-task learning as a bargaining game (Navon et al., ICML 2022).

The update ``d = sum_i alpha_i g_i`` is the Nash bargaining solution of the
tasks over the ball of updates: ``d`` maximises ``sum_i log(g_i^T d)``, which
holds (Sec. 3) when

    (G alpha)_i = 1 / alpha_i,     alpha_i > 0,     G = J J^T,

i.e. every task's directional derivative is inversely proportional to its
weight. Then ``|d|^2 = alpha^T G alpha = T`` whatever the gradient scale, and the
official code clips the shared gradient to norm ``max_norm`` (default 1).

The official code solves the condition approximately with a sequence of
convex programs in cvxpy (a convex-concave procedure: at most
``optim_niter = 20`` ECOS solves on the Gramian divided by its Frobenius norm,
warm-started from the previous step's weights, stopped early once
``|G a - 1/a| < 1e-3`` in that normalisation, an absolute tolerance that
barely constrains the weights of tasks whose gradients are much smaller than
the others'). Here the condition is solved to convergence inside jit by
:func:`mtl.balancers.base.alpha_fair_weights` with ``alpha = 1``: Newton's
method on the strictly convex ``0.5 a^T G a - sum_i log a_i`` (whose stationary
point is exactly the condition above), in the norm-scaled variables
``x_i = |g_i| a_i`` (well conditioned however far apart the gradient norms
are), warm-started on the ray of the previous weights, until every equation
holds to a relative 1e-6 (at most ``optim_niter`` Newton steps; a handful in
practice). Against an exact float64 solution (tests/balancers/test_exact_solutions.py)
the update's direction agrees to cosine >= 0.9999 with gradient norms spanning
four decades, T up to 8.

``update_weights_every = k > 1`` reuses the previous weights on the steps in
between (state: the weights and a step counter).

Args mirror the official ``NashMTL(max_norm=1.0, update_weights_every=1,
optim_niter=20)``.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL and
the official code): the bargaining and the ``max_norm`` ball are over the
shared parameters' update.

Deliberate differences: Newton's method to convergence instead of the
sequential cvxpy programs with their early stop (same fixed point, solved
exactly; no host synchronisation); a tiny ridge ``1e-8`` on the diagonal of
the cosine matrix keeps the solution finite when some non-negative
combination of the gradients vanishes (e.g. opposite gradients), where no
bargaining solution exists. The official code weights the task losses by
``alpha`` (so task-specific heads get ``alpha_i``-scaled gradients too); here
``combined`` is the shared gradient and the heads get what the train step
gives them.

Reference: A. Navon, A. Shamsian, I. Achituve, H. Maron, K. Kawaguchi,
G. Chechik, E. Fetaya. "Multi-Task Learning as a Bargaining Game." ICML 2022.
Official code: github.com/AvivNavon/nash-mtl.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, alpha_fair_weights, clip_by_global_norm, scaled_gramian, weighted_sum


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
      optim_niter: cap on the Newton steps of the solver (it stops at convergence).

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
        gram, s = scaled_gramian(task_grads)  # G = s^2 gram; alpha scales as 1 / s
        fresh = nash_weights(gram, num_iters=optim_niter, init=state.alpha) / s
        recompute = (state.step % update_weights_every) == 0
        alpha = jnp.where(recompute, fresh, state.alpha)
        combined, _ = clip_by_global_norm(weighted_sum(task_grads, alpha), max_norm)
        return combined, alpha, NashMTLState(alpha, state.step + 1)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, name="nash_mtl")
