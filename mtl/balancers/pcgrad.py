"""PCGrad: projecting conflicting gradients (Yu et al., NeurIPS 2020).

For every task ``i`` (a copy ``g_i^PC`` of its gradient) and every other task
``j`` taken in a random order:

    if g_i^PC . g_j < 0:   g_i^PC <- g_i^PC - (g_i^PC . g_j / |g_j|^2) g_j

and the update is ``sum_i g_i^PC`` (Algorithm 1; projections are onto the
*original* gradients ``g_j``, as in the official code).

Every projected gradient stays a linear combination of the task gradients,
``g_i^PC = sum_k C_ik g_k``, so the algorithm runs on the ``T x T`` Gramian
``G = J J^T`` only: ``g_i^PC . g_j = (C G)_ij``. The combined update is
``w^T J`` with ``w = 1^T C``; ``w`` is returned as the task weights. This keeps
the projection loop O(T^3) and independent of the parameter count, and avoids
any host synchronisation (the official code calls ``random.shuffle`` on the host).

The order is drawn from ``key``: one independent permutation per task, like
the official implementation's shuffle inside the loop over tasks.

Reference: T. Yu, S. Kumar, A. Gupta, S. Levine, K. Hausman, C. Finn.
"Gradient Surgery for Multi-Task Learning." NeurIPS 2020.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, gramian_balancer


def pcgrad_coefficients(gram: jax.Array, key: jax.Array) -> jax.Array:
    """Returns ``C`` with ``g_i^PC = sum_k C[i, k] g_k`` for Gramian ``gram``."""
    t = gram.shape[0]
    keys = jax.random.split(key, t)
    orders = jax.vmap(lambda k: jax.random.permutation(k, t))(keys)  # (T, T)
    diag = jnp.diagonal(gram)

    def project_one(i, order):
        c0 = jax.nn.one_hot(i, t, dtype=gram.dtype)

        def body(c, j):
            dot = c @ gram[:, j]
            conflict = (dot < 0) & (j != i) & (diag[j] > 0)
            scale = jnp.where(conflict, dot / jnp.where(diag[j] > 0, diag[j], 1.0), 0.0)
            return c - scale * jax.nn.one_hot(j, t, dtype=gram.dtype), None

        c, _ = jax.lax.scan(body, c0, order)
        return c

    return jax.vmap(project_one)(jnp.arange(t), orders)


def pcgrad() -> Balancer:
    """PCGrad (no hyperparameters). Needs per-task gradients and ``key``."""

    return gramian_balancer(lambda gram, losses, key: pcgrad_coefficients(gram, key).sum(axis=0),
                            name="pcgrad", rep_grad=True)
