"""Fixed task weights (linear scalarization): a constant weighted sum of task losses.

    L = sum_i w_i L_i,        w fixed.

Sweeping ``w`` over the simplex traces the scalarization front that a
multi-task method has to beat (Xin et al., NeurIPS 2022). Like EW it needs no
per-task gradients: the train step applies it as one backward pass of the
weighted loss sum. Empty ``weights`` (the default) is all ones, i.e. EW.
"""

from __future__ import annotations

import jax.numpy as jnp

from mtl.balancers.base import Balancer, EmptyState


def fixed(*, weights: tuple[float, ...] = ()) -> Balancer:
    """Constant weights: ``combined = None``, ``weights = w``.

    Args:
      weights: one non-negative weight per task (``--config.balancer.hparams.weights=0.3,0.7``);
        empty means all ones.
    """
    w = tuple(float(x) for x in weights)
    if any(not x >= 0 for x in w):
        raise ValueError(f"weights must be non-negative numbers, got {w}")

    def init(num_tasks: int) -> EmptyState:
        if w and len(w) != num_tasks:
            raise ValueError(f"balancer.hparams.weights has {len(w)} entries for {num_tasks} tasks")
        return EmptyState()

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        t = losses.shape[-1]
        return None, (jnp.asarray(w, losses.dtype) if w else jnp.ones(t, losses.dtype)), state

    return Balancer(init=init, update=update, grads="none", name="fixed")
