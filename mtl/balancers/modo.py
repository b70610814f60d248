"""MoDo: multi-objective gradient descent with double sampling (Chen et al., NeurIPS 2023).

MGDA's weights are biased when computed from one stochastic batch. MoDo keeps
the weights ``lam`` as a state and moves them by one projected-gradient step
per iteration on the regularised min-norm objective
``0.5 |J^T lam|^2 + 0.5 rho |lam|^2``, whose gradient ``J J^T lam + rho lam`` is
estimated without bias from two independent batches (double sampling); a
third batch gives the update:

    lam <- Pi_simplex(lam - gamma (J_1 J_2^T lam + rho lam))
    d    = J_0^T lam = sum_i lam_i g_0i

``num_batches = 3``: ``losses`` ``(3, T)`` and gradient leaves ``(3, T, ...)``;
batch 0 (the train step's own batch) gives the update, batches 1 and 2 the
weight step. ``lam`` starts uniform.

Defaults are LibMTL's MoDo (``gamma = 1e-3``, ``rho = 0.1``; LibMTL's MoDo is the
authors' three-sample implementation).

Not defined on representation gradients (``rep_grad=False``, as in LibMTL).

Deliberate differences: the authors' earlier LibMTL fork (Trade-Off-MOL)
draws two batches, uses them for the weight step and updates with their sum;
LibMTL's version (three batches, the one followed here) uses the third batch
for the update and divides the task heads' gradients by 3 (the train step's
business). Here the update batch is batch 0 rather than LibMTL's batch 2 (the
batches are exchangeable).

Reference: L. Chen, H. D. Fernando, Y. Ying, T. Chen. "Three-Way Trade-Off in
Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance."
NeurIPS 2023. Code: github.com/heshandevaka/Trade-Off-MOL; LibMTL ``MoDo``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, project_simplex, scaled_cross_gramian, weighted_sum


class MoDoState(NamedTuple):
    lambd: jax.Array  # (T,) task weights on the simplex


def modo(*, gamma: float = 1e-3, rho: float = 0.1) -> Balancer:
    """MoDo (three batches per step).

    Args:
      gamma: step size of the weight update.
      rho: l2 regularisation of the weight subproblem.

    Returns:
      A :class:`Balancer` with ``num_batches = 3``.
    """

    def init(num_tasks: int) -> MoDoState:
        return MoDoState(jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32))

    def update(losses, task_grads, state, *, key=None):
        del losses, key
        g0, g1, g2 = (jax.tree_util.tree_map(lambda g, k=k: g[k], task_grads) for k in range(3))
        cross, s = scaled_cross_gramian(g1, g2)  # J_1 J_2^T = s^2 cross
        lambd = state.lambd
        # gamma J_1 J_2^T lam as (gamma s) (s cross lam): +-inf rather than nan if it overflows;
        # project_simplex clips it (the projection then picks the vertex it points to)
        step = (gamma * s) * (s * (cross @ lambd)) + gamma * rho * lambd
        lambd = project_simplex(lambd - step)
        return weighted_sum(g0, lambd), lambd, MoDoState(lambd)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, num_batches=3, name="modo")
