"""Dynamic Weight Average (DWA), Liu, Johns & Davison, CVPR 2019.

Task weights follow the rate at which each task's loss has been falling over
the last two epochs:

    r_i(t) = Lbar_i(t-1) / Lbar_i(t-2),
    w_i(t) = T * exp(r_i(t) / temp) / sum_j exp(r_j(t) / temp),

where ``Lbar_i(e)`` is task ``i``'s mean training loss over epoch ``e`` and
``temp`` is the softmax temperature (2 in the paper). For the first two epochs
(``t = 0, 1``) the weights are all 1. The network is trained on
``sum_i w_i L_i``: a loss-weighting method, one backward pass, no per-task
gradients (``rep_grad`` is irrelevant and left True).

The state accumulates the current epoch's per-task loss sums itself, so the
train step only has to say how many steps make an epoch: ``steps_per_epoch``
is a run fact (``Balancer.run_facts``), filled in by the training loop
(``mtl.train.fit`` and the command line call
:func:`mtl.balancers.with_run_facts`) unless given explicitly. Left ``None``
(stand-alone use), an epoch is ``DEFAULT_STEPS_PER_EPOCH = 100`` update calls
and ``update`` warns when it is traced.
The epoch of a call is ``step // steps_per_epoch``, counted from the number of
``update`` calls. Like the official code (lorenmt/mtan) and LibMTL, the epoch
means are means of the training mini-batch losses seen during the epoch.

Reference: S. Liu, E. Johns, A. J. Davison. "End-to-End Multi-Task Learning
with Attention." CVPR 2019.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, concrete, declare_run_facts

#: Epoch length used when ``steps_per_epoch`` is left ``None`` (stand-alone use; with a warning).
DEFAULT_STEPS_PER_EPOCH = 100


class DWAState(NamedTuple):
    step: jax.Array  # () int32: number of update calls so far
    loss_sum: jax.Array  # (T,) sum of the current epoch's losses
    loss_count: jax.Array  # () float32: number of steps summed in loss_sum
    prev_mean: jax.Array  # (T,) mean loss of epoch e-1
    prev2_mean: jax.Array  # (T,) mean loss of epoch e-2


def dwa(*, temperature: float = 2.0, steps_per_epoch: int | None = None) -> Balancer:
    """Dynamic Weight Average.

    Args:
      temperature: softmax temperature ``temp`` (paper: 2). Larger values give
        weights closer to 1.
      steps_per_epoch: number of ``update`` calls per training epoch; epoch
        boundaries are where the epoch means are taken. A run fact: ``None``
        (default) lets the training loop fill it in (:func:`with_run_facts`);
        used stand-alone with ``None``, an epoch is ``DEFAULT_STEPS_PER_EPOCH``
        calls and ``update`` warns.

    Returns:
      A :class:`Balancer` with ``grads="none"``; ``update`` returns
      ``(None, weights, state)`` with ``weights`` summing to ``T``.
    """
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if concrete(temperature) and temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    hparams = dict(temperature=temperature, steps_per_epoch=steps_per_epoch)
    epoch_len = DEFAULT_STEPS_PER_EPOCH if steps_per_epoch is None else steps_per_epoch

    def init(num_tasks: int) -> DWAState:
        zeros = jnp.zeros((num_tasks,), jnp.float32)
        return DWAState(jnp.array(0, jnp.int32), zeros, jnp.array(0.0, jnp.float32), zeros, zeros)

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        if steps_per_epoch is None:
            warnings.warn(f"dwa: steps_per_epoch is not set; an epoch is taken as {DEFAULT_STEPS_PER_EPOCH} update "
                          "calls. Pass steps_per_epoch=, or let the training loop fill it in "
                          "(mtl.balancers.with_run_facts).", stacklevel=2)
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        t = losses.shape[-1]

        # Close the previous epoch when this call is the first of a new one.
        new_epoch = (state.step > 0) & (state.step % epoch_len == 0)
        mean = state.loss_sum / jnp.maximum(state.loss_count, 1.0)
        prev2_mean = jnp.where(new_epoch, state.prev_mean, state.prev2_mean)
        prev_mean = jnp.where(new_epoch, mean, state.prev_mean)
        loss_sum = jnp.where(new_epoch, 0.0, state.loss_sum)
        loss_count = jnp.where(new_epoch, 0.0, state.loss_count)

        epoch = state.step // epoch_len
        ratio = prev_mean / jnp.where(prev2_mean > 0, prev2_mean, 1.0)
        ratio = jnp.where(jnp.isfinite(ratio), ratio, 1.0)
        weights = jnp.where(epoch >= 2, t * jax.nn.softmax(ratio / temperature), jnp.ones((t,), jnp.float32))

        new_state = DWAState(state.step + 1, loss_sum + losses, loss_count + 1.0, prev_mean, prev2_mean)
        return None, weights, new_state

    return declare_run_facts(Balancer(init=init, update=update, grads="none", name="dwa"), dwa, hparams,
                             ("steps_per_epoch",))
