"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 2024; torchjd).

Each task gradient ``g_i`` is projected onto the dual cone of the gradients,
``C = {x : g_j^T x >= 0 for all j}`` (the updates that conflict with no task),
and the projections are averaged:

    d = (1/T) sum_i pi_C(g_i).

By Proposition 1 of the paper, ``pi_C(J^T u) = J^T v`` where ``v`` solves the
small quadratic program on the Gramian ``G = J J^T``

    v = argmin_v  v^T G v   subject to   v >= u,

so ``d = J^T w`` with ``w = sum_i v^(i)`` for ``u = e_i / T``. Every ``v`` satisfies
``G v >= 0`` (KKT), hence ``g_j^T d >= 0`` for every task ``j``: the update
conflicts with none of them. When no two gradients conflict (``G >= 0``
elementwise) ``v^(i) = e_i / T`` and ``d`` is the mean gradient.

As in torchjd, ``G`` is first normalised by its trace (zero when the trace is
below ``norm_eps``) and regularised by ``reg_eps * I`` (positive definite).

The ``T`` quadratic programs are solved inside jit, vectorised, by an exact
primal active-set method (the bound-constrained form of Lawson-Hanson NNLS,
with ``x = v - u >= 0``): free variables are added one at a time by the most
negative multiplier ``(G v)_j``, each step solves the equality-constrained
problem on the free set and steps back to feasibility when it leaves it. It
terminates after finitely many steps; ``num_iters`` (at least ``5 T``) steps
are run, a converged iterate staying put.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL):
non-conflict at the representation does not carry over to the parameters.

Deliberate differences: torchjd (and LibMTL) call ``quadprog`` on the host in
float64; here the same QP is solved in float32 on the device by the active-set
method (same solution up to float32 rounding).

Reference: P. Quinton, V. Rey. "Jacobian Descent for Multi-Objective
Optimization." arXiv:2406.16232, 2024. Official code: github.com/TorchJD/torchjd.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, gramian_balancer, small_solve


def box_qp_lower(gram: jax.Array, u: jax.Array, *, num_iters: int = 50, tol: float = 1e-7) -> jax.Array:
    """``argmin_v v^T G v  s.t.  v >= u`` for a positive definite ``G`` (exact active set).

    Solved for ``x = v - u >= 0``: ``min 0.5 x^T G x + (G u)^T x``.
    """
    t = gram.shape[0]
    dtype = gram.dtype
    q = gram @ u
    eye = jnp.eye(t, dtype=dtype)

    def free_solution(free):
        # G_FF x_F = -q_F, x_B = 0
        m = jnp.where(free[:, None] & free[None, :], gram, eye * (~free)[:, None])
        return jnp.where(free, small_solve(m, jnp.where(free, -q, 0.0)), 0.0)

    def body(_, carry):
        x, free, inner, done = carry
        grad = gram @ x + q  # = G v: the multipliers of the bounds
        j = jnp.argmin(jnp.where(free, jnp.inf, grad))
        optimal = jnp.where(free, True, grad >= -tol).all()
        free_outer = free.at[j].set(True)
        z = free_solution(free)
        feasible = jnp.all(jnp.where(free, z > 0.0, True))
        shrink = free & (z <= 0.0)
        ratios = jnp.where(shrink, x / jnp.where(shrink, x - z, 1.0), jnp.inf)
        theta = jnp.clip(jnp.min(ratios), 0.0, 1.0)
        x_line = x + theta * (z - x)
        drop = free & ((x_line <= 0.0) | (ratios == jnp.min(ratios)))
        x_line = jnp.where(drop, 0.0, x_line)
        new_x = jnp.where(inner, jnp.where(feasible, z, x_line), x)
        new_free = jnp.where(inner, jnp.where(feasible, free, free & ~drop), free_outer)
        new_inner = jnp.where(inner, ~feasible, True)
        stop = done | (~inner & optimal)
        ok = ~stop & jnp.all(jnp.isfinite(new_x))
        return (jnp.where(ok, new_x, x), jnp.where(ok, new_free, free),
                jnp.where(ok, new_inner, False), ~ok)

    carry = (jnp.zeros((t,), dtype), jnp.zeros((t,), bool), jnp.array(False), jnp.array(False))
    x, _, _, _ = jax.lax.fori_loop(0, max(num_iters, 5 * t), body, carry)
    return u + x


def upgrad_weights(gram: jax.Array, *, norm_eps: float = 1e-4, reg_eps: float = 1e-4,
                   num_iters: int = 50) -> jax.Array:
    """UPGrad's weights ``w = sum_i v^(i)`` (``d = J^T w``) for Gramian ``gram``."""
    t = gram.shape[0]
    dtype = gram.dtype
    trace = jnp.trace(gram)
    g = jnp.where(trace < norm_eps, jnp.zeros_like(gram), gram / jnp.where(trace > 0, trace, 1.0))
    g = g + reg_eps * jnp.eye(t, dtype=dtype)
    us = jnp.eye(t, dtype=dtype) / t
    vs = jax.vmap(lambda u: box_qp_lower(g, u, num_iters=num_iters))(us)
    return vs.sum(axis=0)


def upgrad(*, norm_eps: float = 1e-4, reg_eps: float = 1e-4, num_iters: int = 50) -> Balancer:
    """UPGrad with the uniform preference vector (torchjd / LibMTL defaults).

    Args:
      norm_eps: the Gramian is set to zero when its trace is below this.
      reg_eps: added to the diagonal of the normalised Gramian.
      num_iters: lower bound on the active-set steps per QP (``5 T`` at least).

    Returns:
      A :class:`Balancer`; ``update`` returns ``d = sum_j w_j g_j`` and ``w``.
    """

    return gramian_balancer(
        lambda gram, losses, key: upgrad_weights(gram, norm_eps=norm_eps, reg_eps=reg_eps, num_iters=num_iters),
        name="upgrad", rep_grad=False)
