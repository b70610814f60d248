"""Geometric Loss Strategy (GLS), Chennupati et al., CVPR Workshops 2019.

The network minimises the geometric mean of the task losses,

    L_GLS = (prod_i L_i)^(1/T).

Its gradient is a weighted sum of the task gradients,

    grad L_GLS = sum_i w_i grad L_i,    w_i = L_GLS / (T * L_i),

so GLS is applied here as a loss-weighting method: ``update`` returns these
``w_i`` (computed in log space, ``L_GLS = exp(mean_i log L_i)``, so that many
tasks neither overflow nor underflow the product) and ``combined = None``; the
train step's backward pass of ``sum_i w_i L_i`` with the weights held fixed
gives exactly ``grad L_GLS``. ``rep_grad`` is irrelevant (no per-task
gradients) and left True.

Losses are clamped below at ``min_loss`` (default 1e-12) before the logarithm;
GLS needs positive losses.

Deliberate difference from LibMTL: LibMTL back-propagates ``L_GLS`` itself and
logs ``L_i / (T * prod_j L_j)`` as "weights", which are not the weights GLS
applies; here the returned weights are the ones actually applied.

Reference: S. Chennupati, G. Sistu, S. Yogamani, S. A. Rawashdeh.
"MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy for
Multi-Task Learning." CVPR Workshops 2019.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, EmptyState


def gls(*, min_loss: float = 1e-12) -> Balancer:
    """Geometric loss strategy as loss weights ``w_i = L_GLS / (T L_i)``.

    Args:
      min_loss: lower clamp on the losses before taking logarithms.

    Returns:
      A :class:`Balancer` with ``grads="none"``; ``update`` returns
      ``(None, weights, state)``.
    """

    def init(num_tasks: int) -> EmptyState:
        del num_tasks
        return EmptyState()

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        t = losses.shape[-1]
        log_l = jnp.log(jnp.maximum(losses, min_loss))
        # w_i = exp(mean_j log L_j - log L_i) / T
        weights = jnp.exp(jnp.mean(log_l) - log_l) / t
        return None, weights, state

    return Balancer(init=init, update=update, grads="none", name="gls")
