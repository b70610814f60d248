"""Uncertainty weighting (UW), Kendall, Gal & Cipolla, CVPR 2018.

Each task has a learnable log-variance ``s_i = log sigma_i^2`` trained jointly
with the network on the total loss (the form used by LibMTL and most reproductions):

    L(theta, s) = sum_i 0.5 * exp(-s_i) * L_i(theta) + 0.5 * s_i.

The network therefore sees task weights ``w_i = 0.5 * exp(-s_i)``, and

    dL/ds_i = 0.5 * (1 - exp(-s_i) * L_i),

whose zero is ``exp(s_i) = L_i``: noisier (larger-loss) tasks are down-weighted.
The log-variances are updated inside ``update`` with their own Adam optimiser
(state is explicit), so no special case is needed in the train step.
Unlike torch-rechub's ``uwl`` the log-variances are not clamped at zero.

Reference: A. Kendall, Y. Gal, R. Cipolla. "Multi-Task Learning Using
Uncertainty to Weigh Losses for Scene Geometry and Semantics." CVPR 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtl.balancers.base import Balancer


class UWState(NamedTuple):
    log_vars: jax.Array  # (T,) s_i = log sigma_i^2
    opt_state: Any


def uw(*, learning_rate: float = 1e-3, init_log_var: float = 0.0) -> Balancer:
    """Uncertainty weighting with learnable log-variances.

    Args:
      learning_rate: Adam step size for the log-variances (the network's usual rate).
      init_log_var: initial ``s_i`` (0 gives initial weights 0.5).
    """
    opt = optax.adam(learning_rate)

    def init(num_tasks: int) -> UWState:
        s = jnp.full((num_tasks,), init_log_var, jnp.float32)
        return UWState(s, opt.init(s))

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        s = state.log_vars
        weights = 0.5 * jnp.exp(-s)
        losses = jax.lax.stop_gradient(losses).astype(s.dtype)
        grad_s = 0.5 * (1.0 - jnp.exp(-s) * losses)
        grad_s = jnp.where(jnp.isfinite(grad_s), grad_s, 0.0)
        updates, opt_state = opt.update(grad_s, state.opt_state, s)
        return None, weights, UWState(optax.apply_updates(s, updates), opt_state)

    return Balancer(init=init, update=update, grads="none", name="uw")
