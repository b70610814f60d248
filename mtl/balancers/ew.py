"""Equal weighting (EW): the plain sum of task losses.

    L = sum_i L_i,        w_i = 1.

The baseline every balancing paper compares against. It needs no per-task
gradients: the train step applies it as one backward pass of the summed loss.
"""

from __future__ import annotations

import jax.numpy as jnp

from mtl.balancers.base import Balancer, EmptyState


def ew() -> Balancer:
    """Equal weights: ``combined = None``, ``weights = ones(T)``."""

    def init(num_tasks: int) -> EmptyState:
        del num_tasks
        return EmptyState()

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        return None, jnp.ones(losses.shape[-1], losses.dtype), state

    return Balancer(init=init, update=update, grads="none", name="ew")
