"""DB-MTL: dual-balancing multi-task learning (Lin et al., 2023).

Two balancing steps:

1. Loss scale: each task's loss is log-transformed, ``log L_i``, whose gradient
   is ``g_i / L_i`` (LibMTL uses ``log(L_i + 1e-8)``).
2. Gradient magnitude: an exponential moving average of the log-loss gradients,

       b_i <- g~_i + beta_k (b_i - g~_i),    g~_i = g_i / (L_i + 1e-8),
       beta_k = beta / k^beta_sigma           (k = 1, 2, ... the step),

   is rescaled so that every task's buffer has the norm of the largest one:

       d = sum_i alpha_i b_i,    alpha_i = max_j |b_j| / (|b_i| + 1e-8).

The buffer ``b`` has the shape of the task gradients, which ``init(num_tasks)``
does not know. Two modes:

* ``init(num_tasks, grads_like=tree)`` (the method as published): ``tree`` is a
  pytree shaped like ONE task's gradient (arrays or ``jax.ShapeDtypeStruct``;
  e.g. the balanced shared parameters); the state holds ``b`` with leaves
  ``(T, *leaf.shape)``. The train step must pass it.
* ``init(num_tasks)`` (fallback, used by the contract test): no gradient buffer;
  the EMA is kept on the norms only, ``n_i <- |g~_i| + beta_k (n_i - |g~_i|)``, and
  ``d = sum_i alpha_i g~_i`` with ``alpha_i = max_j n_j / (n_i + 1e-8)``. This keeps
  the magnitude smoothing but not the directional averaging.

Defaults are LibMTL's (``beta = 0.9``, ``beta_sigma = 0``); LibMTL's DB-MTL is the
authors' implementation. The returned weights are the effective coefficients
of the current raw task gradients in the fallback mode (``alpha_i / (L_i + 1e-8)``)
and ``alpha`` (the buffers' coefficients) with a gradient buffer.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL): the
buffer would have to follow the representation's batch-dependent shape.

Reference: B. Lin, W. Jiang, F. Ye, Y. Zhang, P. Chen, Y.-C. Chen, S. Liu,
I. W. Tsang, J. T. Kwok. "Dual-Balancing for Multi-Task Learning."
arXiv:2308.12029, 2023 (Neural Networks, 2025).
Code: github.com/median-research-group/LibMTL (``LibMTL/weighting/DB_MTL.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, task_norms, weighted_sum


class DBMTLState(NamedTuple):
    step: jax.Array  # () int32, updates so far
    grad_buffer: Any  # pytree of (T, ...) EMA of log-loss gradients, or None (fallback)
    norm_buffer: jax.Array  # (T,) EMA of the log-loss gradient norms (fallback only)


def _task_scale(task_grads, scale):
    return jax.tree_util.tree_map(
        lambda g: g * scale.astype(g.dtype).reshape((-1,) + (1,) * (g.ndim - 1)), task_grads)


def db_mtl(*, beta: float = 0.9, beta_sigma: float = 0.0) -> Balancer:
    """DB-MTL.

    Args:
      beta: EMA coefficient of the gradient buffer (LibMTL ``DB_beta``).
      beta_sigma: decay exponent, ``beta_k = beta / k^beta_sigma`` (``DB_beta_sigma``).

    Returns:
      A :class:`Balancer` whose ``init(num_tasks, grads_like=None)`` takes the
      optional gradient template described in the module docstring.
    """

    def init(num_tasks: int, grads_like: Any | None = None) -> DBMTLState:
        buf = None
        if grads_like is not None:
            buf = jax.tree_util.tree_map(
                lambda x: jnp.zeros((num_tasks, *x.shape), x.dtype), grads_like)
        return DBMTLState(jnp.zeros((), jnp.int32), buf, jnp.zeros((num_tasks,), jnp.float32))

    def update(losses, task_grads, state, *, key=None):
        del key
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        step = state.step + 1
        beta_k = beta / step.astype(jnp.float32) ** beta_sigma
        inv_loss = 1.0 / (losses + 1e-8)
        log_grads = _task_scale(task_grads, inv_loss)
        if state.grad_buffer is not None:
            buf = jax.tree_util.tree_map(
                lambda g, b: (g + beta_k * (b - g)).astype(b.dtype), log_grads, state.grad_buffer)
            norms = task_norms(buf)
            alpha = jnp.max(norms) / (norms + 1e-8)
            return weighted_sum(buf, alpha), alpha, DBMTLState(step, buf, state.norm_buffer)
        norms = task_norms(task_grads) * inv_loss
        nbuf = norms + beta_k * (state.norm_buffer - norms)
        alpha = jnp.max(nbuf) / (nbuf + 1e-8)
        weights = alpha * inv_loss
        return weighted_sum(task_grads, weights), weights, DBMTLState(step, None, nbuf)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, init_takes_grads_like=True, name="db_mtl")
