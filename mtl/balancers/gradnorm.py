"""GradNorm: gradient normalisation for adaptive loss balancing (Chen et al., ICML 2018).

Learnable task weights ``w_i`` (initialised to 1) scale the task losses. With
``W`` the last shared layer's parameters:

    G_i      = | grad_W (w_i L_i) | = w_i | grad_W L_i |
    G_bar    = mean_i G_i
    r_i      = (L_i / L_i(0)) / mean_j (L_j / L_j(0))      (inverse training rate)
    L_grad   = sum_i | G_i - stopgrad(G_bar * r_i^alpha) |

The weights take one optimiser step on ``dL_grad/dw`` and are then renormalised
so that ``sum_i w_i = T`` (Sec. 3.2). The network is updated with the weighted
loss ``sum_i w_i L_i`` using the weights *before* this step. ``L_i(0)`` is the
loss at the first step.

The per-task gradient norms are taken at the last shared layer (the train step
provides them when ``grads == "last_shared"``, at the cost of T pullbacks that stop
at that layer); the network update itself is one backward pass of the weighted sum.

Reference: Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich. "GradNorm:
Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
Networks." ICML 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtl.balancers.base import Balancer, task_norms


class GradNormState(NamedTuple):
    weights: jax.Array  # (T,) learnable, sum to T
    initial_losses: jax.Array  # (T,) L_i(0)
    initialised: jax.Array  # () bool
    opt_state: Any


def gradnorm(*, alpha: float = 1.5, learning_rate: float = 0.025) -> Balancer:
    """GradNorm.

    Args:
      alpha: asymmetry hyperparameter (paper: 1.5 for NYUv2, 0.12 for
        regression; larger pulls harder towards equal training rates).
      learning_rate: Adam step size for the task weights.
    """
    opt = optax.adam(learning_rate)

    def init(num_tasks: int) -> GradNormState:
        w = jnp.ones((num_tasks,), jnp.float32)
        return GradNormState(w, jnp.ones((num_tasks,), jnp.float32), jnp.array(False), opt.init(w))

    def update(losses, task_grads, state, *, key=None):
        del key
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        t = losses.shape[0]
        l0 = jnp.where(state.initialised, state.initial_losses, losses)
        norms = task_norms(task_grads)  # |grad_W L_i|

        def grad_loss(w):
            g = w * norms
            ratio = losses / jnp.where(l0 > 0, l0, 1.0)
            r = ratio / jnp.maximum(jnp.mean(ratio), 1e-12)
            target = jax.lax.stop_gradient(jnp.mean(g) * r**alpha)
            return jnp.sum(jnp.abs(g - target))

        w = state.weights
        dw = jax.grad(grad_loss)(w)
        dw = jnp.where(jnp.isfinite(dw), dw, 0.0)
        # dL_grad/dw has the size of the gradient norms; Adam's second moment squares it. Beyond
        # 2^50 (norms of ~1e15 and more) it is divided by a power of two so the square stays finite
        # (Adam's step hardly depends on the gradient's scale).
        big = jnp.max(jnp.abs(dw))
        dw = dw / jnp.where(big > 2.0**50, jnp.exp2(jnp.ceil(jnp.log2(jnp.maximum(big, 1.0)))) / 2.0**50, 1.0)
        updates, opt_state = opt.update(dw, state.opt_state, w)
        new_w = jnp.maximum(optax.apply_updates(w, updates), 1e-6)
        new_w = new_w * t / jnp.sum(new_w)
        return None, w, GradNormState(new_w, l0, jnp.array(True), opt_state)

    return Balancer(init=init, update=update, grads="last_shared", rep_grad=False, name="gradnorm")
