"""SDMGrad: stochastic direction-oriented multi-objective gradient descent (Xiao et al., NeurIPS 2023).

The update direction is kept close to a target direction, the average gradient
``g_0 = (1/T) sum_i g_i``, through the regularised min-norm problem

    w* = argmin_{w in simplex}  0.5 | J^T w + lamda g_0 |^2,
    d  = (J^T w* + lamda g_0) / (1 + lamda)

(``lamda = 0`` is MGDA, ``lamda -> inf`` the average gradient). Its stochastic
version uses three independent batches per step (``num_batches = 3``): two
(``xi``, ``xi'``) give an unbiased estimate of the Gramian for the ``w``
subproblem, the third (``zeta``) gives the update:

    GG  = J_xi J_xi'^T / s^2,     s = mean_i sqrt(max(GG_ii, 0))      (scale-free)
    w  <- Pi_simplex(w - lr (GG w + lamda GG 1 / T))                  niter SGD steps
                                                                      (momentum 0.5)
    d   = T (J_zeta^T w + lamda mean_i g_zeta_i) / (1 + lamda),   then clip(d, max_norm)

``w`` persists across steps (warm start); the momentum buffer restarts every
step (a new optimiser per call in the official code). Defaults are the
official code's: ``lamda = 0.3`` (its trainers' default; also LibMTL's), ``niter = 20``, ``lr = 10``, momentum ``0.5``, the ``T *``
factor and ``clip_grad_norm_`` with ``max_norm = 1``.

Batch order: ``losses`` ``(3, T)`` and gradient leaves ``(3, T, ...)``; batch 0
(the train step's own batch) is ``zeta``, batches 1 and 2 are ``xi`` and
``xi'``, as in the official NYUv2 trainer.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL).

Deliberate differences: the scale ``s`` clamps negative cross-Gramian diagonals
at zero as LibMTL does (the official ``sqrt(diag + 1e-4)`` can be NaN); LibMTL
uses ``lr = 5`` and neither the ``T *`` factor nor the clipping (``w_lr=5``,
``max_norm=0`` and dividing the weights by ``T`` reproduce it).
Returned weights: ``T (w + lamda / T) / (1 + lamda)``, the coefficients of the
``zeta`` gradients in ``d`` before clipping.

Reference: P. Xiao, H. Ban, K. Ji. "Direction-oriented Multi-objective
Learning: Simple and Provable Stochastic Algorithms." NeurIPS 2023.
Official code: github.com/OptMN-Lab/sdmgrad.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from optax.projections import projection_simplex

from mtl.balancers.base import Balancer, clip_by_global_norm, cross_gramian, weighted_sum


class SDMGradState(NamedTuple):
    w: jax.Array  # (T,) simplex weights, warm-started across steps


def sdmgrad_weights(cross_gram: jax.Array, w0: jax.Array, *, lamda: float, niter: int,
                    lr: float, momentum: float) -> jax.Array:
    """``niter`` projected SGD-with-momentum steps on ``0.5 w^T GG w + lamda w^T GG 1/T``."""
    t = cross_gram.shape[0]
    diag = jnp.maximum(jnp.diagonal(cross_gram), 0.0)
    scale = jnp.mean(jnp.sqrt(diag))
    gg = cross_gram / (scale**2 + 1e-8)
    gg_mean = jnp.mean(gg, axis=1)

    def body(i, carry):
        w, buf = carry
        grad = gg @ w + lamda * gg_mean
        buf = jnp.where(i == 0, grad, momentum * buf + grad)  # torch SGD momentum, no dampening
        w = projection_simplex(w - lr * buf)
        return w, buf

    w, _ = jax.lax.fori_loop(0, niter, body, (w0, jnp.zeros((t,), cross_gram.dtype)))
    return w


def sdmgrad(*, lamda: float = 0.3, niter: int = 20, w_lr: float = 10.0, momentum: float = 0.5,
            max_norm: float = 1.0) -> Balancer:
    """SDMGrad (three batches per step).

    Args:
      lamda: weight of the average-gradient target direction.
      niter: SGD steps on the weight subproblem per training step.
      w_lr: step size of those SGD steps (official 10; LibMTL 5).
      momentum: their momentum.
      max_norm: clip the combined gradient to this global norm (``<= 0``: no clipping).

    Returns:
      A :class:`Balancer` with ``num_batches = 3``.
    """

    def init(num_tasks: int) -> SDMGradState:
        return SDMGradState(jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32))

    def update(losses, task_grads, state, *, key=None):
        del losses, key
        zeta = jax.tree_util.tree_map(lambda g: g[0], task_grads)
        xi1 = jax.tree_util.tree_map(lambda g: g[1], task_grads)
        xi2 = jax.tree_util.tree_map(lambda g: g[2], task_grads)
        cross = cross_gramian(xi1, xi2).astype(jnp.float32)
        w = sdmgrad_weights(cross, state.w, lamda=lamda, niter=niter, lr=w_lr, momentum=momentum)
        t = w.shape[0]
        weights = t * (w + lamda / t) / (1.0 + lamda)
        combined, _ = clip_by_global_norm(weighted_sum(zeta, weights), max_norm)
        return combined, weights, SDMGradState(w)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, num_batches=3,
                    name="sdmgrad")
