"""Gradient Vaccine (GradVac), Wang et al., ICLR 2021.

GradVac generalises PCGrad: instead of only removing negative cosine
similarity, it pulls the similarity between task gradients up to an adaptive
target. For every task ``i`` (a copy ``g_i'`` of its gradient) and every other
task ``j`` in a random order, with ``phi_ij = cos(g_i', g_j)`` and the target
``phihat_ij``:

    if phi_ij < phihat_ij:
        g_i' <- g_i' + |g_i'| (phihat_ij sqrt(1 - phi_ij^2) - phi_ij sqrt(1 - phihat_ij^2))
                       / (|g_j| sqrt(1 - phihat_ij^2)) * g_j
    phihat_ij <- (1 - beta) phihat_ij + beta phi_ij

The update is ``sum_i g_i'``; the targets start at 0 (so the first steps act
like PCGrad's conflict test) and are kept in the state as a ``(T, T)`` matrix.

Every modified gradient stays a linear combination of the task gradients,
``g_i' = sum_k C_ik g_k``, so, as in :mod:`mtl.balancers.pcgrad`, the loop runs
on the ``T x T`` Gramian ``G`` only: ``g_i' . g_j = (C G)_ij`` and
``|g_i'|^2 = (C G C^T)_ii``. The update is ``w^T J`` with ``w = 1^T C``,
returned as the task weights. The random orders (one permutation per task)
come from ``key``; the official code and LibMTL use ``random.shuffle`` on the
host.

Deliberate differences:

* Granularity: the paper sets targets per parameter group (e.g. per layer)
  ``k``; this implementation uses one group, the whole shared-parameter vector
  (LibMTL's default ``GradVac_group_type=0``).
* The EMA update of ``phihat_ij`` happens at every visit of the pair, as in the
  paper's Algorithm 1 and in LibMTL's current code (which moved the update out
  of the correction's ``if`` in February 2024, "fix a bug in GradVac"), so the
  default matches both. ``update_target_always=False`` updates it only when
  the correction fires, as LibMTL's code did before that fix (targets then
  never increase).
* ``1e-8`` is added to the norms in the denominators, as in LibMTL.

GradVac is defined on parameter gradients (LibMTL refuses ``rep_grad``), so
``rep_grad=False``.

Reference: Z. Wang, Y. Tsvetkov, O. Firat, Y. Cao. "Gradient Vaccine:
Investigating and Improving Multi-task Optimization in Massively Multilingual
Models." ICLR 2021.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, concrete, scaled_gramian, weighted_sum

_EPS = 1e-8


class GradVacState(NamedTuple):
    targets: jax.Array  # (T, T) phihat_ij, EMA of the cosine similarity


def visiting_orders(key: jax.Array, num_tasks: int) -> jax.Array:
    """One random permutation of the tasks per task, ``(T, T)``, drawn from ``key``."""
    keys = jax.random.split(key, num_tasks)
    return jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(keys)


def gradvac_coefficients(
    gram: jax.Array, targets: jax.Array, orders: jax.Array, beta: float, update_target_always: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Runs the GradVac loop on the Gramian.

    Args:
      gram: ``(T, T)`` Gramian of the task gradients.
      targets: ``(T, T)`` current targets ``phihat``.
      orders: ``(T, T)`` integer array; row ``i`` is the order in which task
        ``i`` visits the tasks (its own index is skipped).
      beta: EMA rate of the targets.
      update_target_always: update ``phihat_ij`` at every visit (paper, LibMTL
        since 2024) or only when the correction fires (LibMTL before 2024).

    Returns:
      ``C`` with ``g_i' = sum_k C[i, k] g_k``, and the new targets.
    """
    t = gram.shape[0]
    dtype = gram.dtype
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))

    def vaccinate_one(i, order, target_row):
        c0 = jax.nn.one_hot(i, t, dtype=dtype)

        def body(carry, j):
            c, row = carry
            cg = c @ gram  # (g_i' . g_k)_k
            norm_i = jnp.sqrt(jnp.maximum(cg @ c, 0.0))
            phi = cg[j] / (norm_i * norms[j] + _EPS)
            phi_hat = row[j]
            fire = (phi < phi_hat) & (j != i)
            sin_phi = jnp.sqrt(jnp.maximum(1.0 - phi * phi, 0.0))
            sin_hat = jnp.sqrt(jnp.maximum(1.0 - phi_hat * phi_hat, 0.0))
            w = norm_i * (phi_hat * sin_phi - phi * sin_hat) / (norms[j] * sin_hat + _EPS)
            c = c + jnp.where(fire, w, 0.0) * jax.nn.one_hot(j, t, dtype=dtype)
            move = (j != i) & (fire | update_target_always)
            row = row.at[j].set(jnp.where(move, (1.0 - beta) * phi_hat + beta * phi, phi_hat))
            return (c, row), None

        (c, row), _ = jax.lax.scan(body, (c0, target_row), order)
        return c, row

    coeffs, new_targets = jax.vmap(vaccinate_one)(jnp.arange(t), orders, targets.astype(dtype))
    return coeffs, new_targets


def gradvac(*, beta: float = 0.5, update_target_always: bool = True) -> Balancer:
    """GradVac on the whole shared-parameter vector.

    Args:
      beta: EMA rate of the similarity targets (LibMTL's default 0.5).
      update_target_always: see the module docstring.

    Returns:
      A :class:`Balancer` with ``grads="shared"``; ``update`` returns
      ``(combined, weights, state)`` with ``combined = sum_k weights_k g_k``;
      ``key`` is required.
    """
    if concrete(beta) and not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")

    def init(num_tasks: int) -> GradVacState:
        return GradVacState(jnp.zeros((num_tasks, num_tasks), jnp.float32))

    def update(losses, task_grads, state, *, key):
        del losses
        gram, _ = scaled_gramian(task_grads)  # the coefficients are scale invariant
        orders = visiting_orders(key, gram.shape[0])
        coeffs, targets = gradvac_coefficients(gram, state.targets, orders, beta, update_target_always)
        weights = coeffs.sum(axis=0)
        return weighted_sum(task_grads, weights), weights, GradVacState(targets.astype(jnp.float32))

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, name="gradvac")
