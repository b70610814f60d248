"""MetaBalance, He et al., WWW 2022.

Task 0 is the target task, tasks ``1..T-1`` are auxiliary. MetaBalance keeps
exponential moving averages of the gradient norms,

    m_i <- beta m_i + (1 - beta) |g_i|,

and pulls every auxiliary gradient's magnitude towards the target's with the
relax factor ``r``:

    g_i <- r * (m_0 / m_i) g_i + (1 - r) g_i,      i = 1..T-1,

then sums: ``d = g_0 + sum_{i>=1} g_i``. The target gradient is unchanged
(its factor is ``r m_0/m_0 + 1 - r = 1``). This is the paper's strategy C
(adapt the magnitude whether the auxiliary gradient is larger or smaller),
the one its official code implements. The moving averages start at 0 without
bias correction, as in the official code (all tasks share the same bias, so the
ratios are unaffected).

Granularity (``num_blocks``): the paper and its official code apply this per
parameter tensor. A balancer's state is built by ``init(num_tasks)`` before
any gradient is seen, so the number of blocks is a hyperparameter:

* ``num_blocks=1`` (default): one block, the whole shared gradient vector;
  ``combined = sum_i f_i g_i`` with one factor per task, returned as the
  weights.
* ``num_blocks=K > 1``: one block per leaf of the gradient pytree (``K`` must
  equal the number of leaves): each leaf has its own norms and factors, as in
  the paper; the weights returned for logging are then the factors averaged
  over the leaves.

A block whose auxiliary moving average is 0 (a gradient that has always been
zero) keeps factor 1.

MetaBalance is defined on the shared parameters' gradients, so
``rep_grad=False``.

Reference: Y. He, X. Feng, C. Cheng, G. Ji, Y. Guo, J. Caverlee. "MetaBalance:
Improving Multi-Task Recommendations via Adapting Gradient Magnitudes of
Auxiliary Tasks." WWW 2022. Official code: facebookresearch/MetaBalance.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, concrete, task_norms


class MetaBalanceState(NamedTuple):
    norm_ema: jax.Array  # (T, K) moving averages of the per-block gradient norms


def metabalance_factors(norm_ema: jax.Array, relax_factor: float) -> jax.Array:
    """Per-task, per-block factors ``r m_0 / m_i + 1 - r`` (1 for the target)."""
    target = norm_ema[0:1]
    ratio = jnp.where(norm_ema > 0, target / jnp.where(norm_ema > 0, norm_ema, 1.0), 1.0)
    factors = relax_factor * ratio + (1.0 - relax_factor)
    return factors.at[0].set(1.0)


def metabalance(*, relax_factor: float = 0.7, beta: float = 0.9, num_blocks: int = 1) -> Balancer:
    """MetaBalance with task 0 as the target task.

    Args:
      relax_factor: ``r`` in [0, 1) (paper and official default 0.7; 0 is the
        plain sum).
      beta: moving-average rate of the gradient norms (0.9, as in the paper).
      num_blocks: 1 for the whole shared vector (default), or the number of
        leaves of the gradient pytree for the paper's per-tensor version.

    Returns:
      A :class:`Balancer` with ``grads="shared"``; ``update`` returns
      ``(combined, weights, state)``.
    """
    if concrete(relax_factor) and not 0.0 <= relax_factor < 1.0:
        raise ValueError(f"relax_factor must be in [0, 1), got {relax_factor}")
    if concrete(beta) and not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")

    def init(num_tasks: int) -> MetaBalanceState:
        return MetaBalanceState(jnp.zeros((num_tasks, num_blocks), jnp.float32))

    def update(losses, task_grads, state, *, key=None):
        del losses, key
        leaves, treedef = jax.tree_util.tree_flatten(task_grads)
        if num_blocks == 1:
            norms = task_norms(task_grads)[:, None]  # (T, 1)
        elif num_blocks == len(leaves):
            norms = task_norms(task_grads, per_leaf=True)  # (T, leaves)
        else:
            raise ValueError(
                f"metabalance(num_blocks={num_blocks}) but the gradients have {len(leaves)} leaves; "
                "use num_blocks=1 (whole vector) or the number of leaves"
            )
        norm_ema = beta * state.norm_ema + (1.0 - beta) * norms
        factors = metabalance_factors(norm_ema, relax_factor)  # (T, K)
        if num_blocks == 1:
            outs = [jnp.tensordot(factors[:, 0].astype(g.dtype), g, axes=1) for g in leaves]
        else:
            outs = [jnp.tensordot(factors[:, k].astype(g.dtype), g, axes=1) for k, g in enumerate(leaves)]
        weights = jnp.mean(factors, axis=1)
        return jax.tree_util.tree_unflatten(treedef, outs), weights, MetaBalanceState(norm_ema)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, name="metabalance")
