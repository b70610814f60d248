"""FAMO: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).

A loss-only method with O(1) cost in the number of tasks. Task logits ``xi``
(initialised to 0) give a distribution ``z = softmax(xi)``; the network is
trained on

    L_FAMO = sum_i (z_i / c) log(L_i - Lmin_i + eps),   c = sum_j z_j / (L_j - Lmin_j + eps),

whose gradient is ``sum_i w_i grad L_i`` with the applied weights

    w_i = (z_i / D_i) / sum_j (z_j / D_j),      D_i = L_i - Lmin_i + eps,

so the weights sum to 1 (``c`` is held constant in the backward pass).
After the parameter update the task losses are recomputed on the same batch
and the logits take one step of their own optimiser on

    delta_i = log D_i(before) - log D_i(after)       (the log-loss decrease)
    grad_xi = J_softmax(xi)^T delta = z * (delta - z . delta),

with Adam at learning rate ``learning_rate`` and an L2 penalty ``gamma``
added to the gradient (``grad_xi + gamma * xi``, i.e. torch's Adam
``weight_decay``, as in the official code). Tasks whose loss fell more get a
smaller logit. The logit step lives in :attr:`Balancer.after_update`, which
the train step calls with the losses before and after the update;
``update`` itself only reads ``xi``.

``Lmin`` (``min_losses`` in the state) is zero unless set, as in the official
code (``set_min_losses``). ``rep_grad`` is irrelevant (no per-task gradients)
and left True.

Defaults: ``learning_rate=0.025`` (paper, official code and LibMTL),
``gamma=1e-3`` (LibMTL's default and the official QM9 script's; the official
CelebA script uses 1e-2, ``famo.py`` defaults to 1e-2 and
``methods/weight_methods.py`` to 1e-5), ``eps=1e-8``. ``D_i`` is clamped at 0
before adding ``eps`` (the official code does not clamp; it only matters if a
loss falls below ``Lmin``). The official code also clips the shared
gradient's norm at 1; that is the train step's optimiser's business and is not
done here.

Reference: B. Liu, Y. Feng, P. Stone, Q. Liu. "FAMO: Fast Adaptive Multitask
Optimization." NeurIPS 2023. Official code: github.com/Cranial-XIX/FAMO.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtl.balancers.base import Balancer


class FAMOState(NamedTuple):
    logits: jax.Array  # (T,) xi
    min_losses: jax.Array  # (T,) Lmin, zeros unless set
    opt_state: Any


def famo(*, learning_rate: float = 0.025, gamma: float = 1e-3, eps: float = 1e-8) -> Balancer:
    """FAMO.

    Args:
      learning_rate: Adam step size for the task logits ``xi``.
      gamma: L2 regularisation of the logits (torch Adam ``weight_decay``).
      eps: added to ``L_i - Lmin_i`` before the logarithm.

    Returns:
      A :class:`Balancer` with ``grads="none"`` and an ``after_update`` hook
      ``after_update(state, losses_before, losses_after) -> state``.
    """
    opt = optax.chain(optax.add_decayed_weights(gamma), optax.adam(learning_rate))

    def init(num_tasks: int) -> FAMOState:
        xi = jnp.zeros((num_tasks,), jnp.float32)
        return FAMOState(xi, jnp.zeros((num_tasks,), jnp.float32), opt.init(xi))

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        z = jax.nn.softmax(state.logits)
        d = jnp.maximum(losses - state.min_losses, 0.0) + eps
        q = z / d
        weights = q / jnp.sum(q)
        return None, weights, state

    def after_update(state, losses_before, losses_after):
        before = jax.lax.stop_gradient(losses_before).astype(jnp.float32)
        after = jax.lax.stop_gradient(losses_after).astype(jnp.float32)
        log_d = lambda l: jnp.log(jnp.maximum(l - state.min_losses, 0.0) + eps)
        delta = log_d(before) - log_d(after)
        delta = jnp.where(jnp.isfinite(delta), delta, 0.0)
        xi = state.logits
        z = jax.nn.softmax(xi)
        grad_xi = z * (delta - jnp.dot(z, delta))  # J_softmax(xi)^T delta
        updates, opt_state = opt.update(grad_xi, state.opt_state, xi)
        return FAMOState(optax.apply_updates(xi, updates), state.min_losses, opt_state)

    return Balancer(init=init, update=update, grads="none", after_update=after_update, name="famo")
