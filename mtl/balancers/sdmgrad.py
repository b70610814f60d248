"""SDMGrad: stochastic direction-oriented multi-objective gradient descent (Xiao et al., NeurIPS 2023).

The update direction is kept close to a target direction, the average gradient
``g_0 = (1/T) sum_i g_i``, through the regularised min-norm problem

    w* = argmin_{w in simplex}  0.5 | J^T w + lamda g_0 |^2,
    d  = (J^T w* + lamda g_0) / (1 + lamda)

(``lamda = 0`` is MGDA, ``lamda -> inf`` the average gradient). Its stochastic
version uses three independent batches per step (``num_batches = 3``): two
(``xi``, ``xi'``) give an unbiased estimate ``GG = J_xi J_xi'^T`` of the
Gramian for the ``w`` subproblem, the third (``zeta``) gives the update:

    d = T (J_zeta^T w + lamda mean_i g_zeta_i) / (1 + lamda),   then clip(d, max_norm).

The ``w`` subproblem (``inner``):

* ``"exact"`` (default): solved to optimality. Since ``sum_i w_i = 1``,
  ``J^T w + lamda g_0 = sum_i w_i (g_i + lamda g_0)``: it is the minimum-norm
  point of the shifted gradients ``h_i = g_i + lamda g_0``, whose Gramian is
  ``P GG P^T`` with ``P = I + (lamda / T) 1 1^T``, solved exactly by
  :func:`mtl.balancers.base.simplex_solve` (as MGDA's). ``GG`` is first
  symmetrised and, when the two batches make it indefinite, replaced by its
  positive semi-definite part (negative eigenvalues set to zero; Jacobi
  eigendecomposition), which makes the subproblem convex; with equal batches
  it is the exact deterministic subproblem. Against an exact float64 solution
  the direction agrees to cosine >= 0.9999 with gradient norms spanning four
  decades, T up to 8 (tests/balancers/test_exact_solutions.py).
* ``"sgd"``: the official code's loop, ``niter`` projected SGD steps with
  momentum on the scale-free ``GG / s^2``, ``s = mean_i sqrt(max(GG_ii, 0))``,

      w <- Pi_simplex(w - lr (GG w + lamda GG 1 / T))      (momentum 0.5)

  warm-started from the previous step's ``w`` (the momentum buffer restarts
  every step: a new optimiser per call in the official code). With ``lr = 10``
  it does not converge on the subproblem in general (the step exceeds 2 / L
  for the normalised ``GG``, and tasks whose gradients are much smaller than
  the others' barely move); it is kept to reproduce the official code.

Defaults are the official code's: ``lamda = 0.3`` (its trainers' default; also
LibMTL's), the ``T *`` factor and ``clip_grad_norm_`` with ``max_norm = 1``;
for ``inner="sgd"`` ``niter = 20``, ``lr = 10``, momentum ``0.5``.

Batch order: ``losses`` ``(3, T)`` and gradient leaves ``(3, T, ...)``; batch 0
(the train step's own batch) is ``zeta``, batches 1 and 2 are ``xi`` and
``xi'``, as in the official NYUv2 trainer.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL).

Deliberate differences: the exact inner solve by default (above); in the
``"sgd"`` mode the scale ``s`` clamps negative cross-Gramian diagonals at zero
as LibMTL does (the official ``sqrt(diag + 1e-4)`` can be NaN); LibMTL uses
``lr = 5`` and neither the ``T *`` factor nor the clipping (``inner="sgd"``,
``w_lr=5``, ``max_norm=0`` and dividing the weights by ``T`` reproduce it).
Returned weights: ``T (w + lamda / T) / (1 + lamda)``, the coefficients of the
``zeta`` gradients in ``d`` before clipping.

Reference: P. Xiao, H. Ban, K. Ji. "Direction-oriented Multi-objective
Learning: Simple and Provable Stochastic Algorithms." NeurIPS 2023.
Official code: github.com/OptMN-Lab/sdmgrad.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import (
    Balancer,
    clip_by_global_norm,
    project_simplex,
    scaled_cross_gramian,
    simplex_solve,
    small_eigh,
    weighted_sum,
)

INNER_SOLVERS = ("exact", "sgd")


class SDMGradState(NamedTuple):
    w: jax.Array  # (T,) simplex weights, warm-started across steps


def sdmgrad_weights(cross_gram: jax.Array, w0: jax.Array, *, lamda: float, niter: int,
                    lr: float, momentum: float) -> jax.Array:
    """The official inner loop: ``niter`` projected SGD-with-momentum steps on
    ``0.5 w^T GG w + lamda w^T GG 1/T`` (``inner="sgd"``)."""
    t = cross_gram.shape[0]
    diag = jnp.maximum(jnp.diagonal(cross_gram), 0.0)
    scale = jnp.mean(jnp.sqrt(diag))
    gg = cross_gram / (scale**2 + 1e-8)
    gg_mean = jnp.mean(gg, axis=1)

    def body(i, carry):
        w, buf = carry
        grad = gg @ w + lamda * gg_mean
        buf = jnp.where(i == 0, grad, momentum * buf + grad)  # torch SGD momentum, no dampening
        w = project_simplex(w - lr * buf)
        return w, buf

    w, _ = jax.lax.fori_loop(0, niter, body, (w0, jnp.zeros((t,), cross_gram.dtype)))
    return w


def _min_pivot(m: jax.Array) -> jax.Array:
    """The smallest pivot of symmetric Gaussian elimination on ``m`` (diagonal entries at most 1):
    >= 0 for a positive semi-definite matrix (up to rounding), < 0 otherwise."""
    n = m.shape[0]
    rows = jnp.arange(n)

    def step(k, carry):
        m, low = carry
        piv = m[k, k]
        col = jnp.where(rows > k, m[:, k], 0.0)
        use = piv > 1e-7  # a zero pivot of a PSD matrix has a zero column: nothing to eliminate
        m = m - jnp.where(use, col[:, None] * col[None, :] / jnp.where(use, piv, 1.0), 0.0)
        indefinite = ~use & jnp.any(jnp.abs(col) > 1e-6)  # zero pivot, non-zero column
        return m, jnp.minimum(low, jnp.where(indefinite, -1.0, piv))

    return jax.lax.fori_loop(0, n, step, (m, jnp.array(jnp.inf, m.dtype)))[1]


def sdmgrad_exact_weights(cross_gram: jax.Array, *, lamda: float) -> jax.Array:
    """``argmin_{w in simplex} |sum_i w_i (g_i + lamda g_0)|^2`` on the (PSD part of the
    symmetrised) cross-Gramian, exactly (``inner="exact"``)."""
    t = cross_gram.shape[0]
    sym = 0.5 * (cross_gram + cross_gram.T)
    scale = jnp.max(jnp.abs(sym))
    sym = sym / jnp.where(scale > 0, scale, 1.0)

    def psd_part(m):
        lam, v = small_eigh(m)
        out = (v * jnp.maximum(lam, 0.0)[None, :]) @ v.T
        return 0.5 * (out + out.T)

    # the eigendecomposition only when the matrix is not already PSD (always, with equal batches)
    psd = jax.lax.cond(_min_pivot(sym) >= -1e-6, lambda m: m, psd_part, sym)
    p = jnp.eye(t, dtype=psd.dtype) + lamda / t
    return simplex_solve(p @ psd @ p.T, max_iters=5 * t + 10)


def sdmgrad(*, lamda: float = 0.3, niter: int = 20, w_lr: float = 10.0, momentum: float = 0.5,
            max_norm: float = 1.0, inner: str = "exact") -> Balancer:
    """SDMGrad (three batches per step).

    Args:
      lamda: weight of the average-gradient target direction.
      niter: SGD steps on the weight subproblem per training step (``inner="sgd"``).
      w_lr: step size of those SGD steps (official 10; LibMTL 5).
      momentum: their momentum.
      max_norm: clip the combined gradient to this global norm (``<= 0``: no clipping).
      inner: ``"exact"`` (solve the weight subproblem to optimality) or
        ``"sgd"`` (the official loop); see the module docstring.

    Returns:
      A :class:`Balancer` with ``num_batches = 3``.
    """
    if inner not in INNER_SOLVERS:
        raise ValueError(f"inner must be one of {INNER_SOLVERS}, got {inner!r}")

    def init(num_tasks: int) -> SDMGradState:
        return SDMGradState(jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32))

    def update(losses, task_grads, state, *, key=None):
        del losses, key
        zeta = jax.tree_util.tree_map(lambda g: g[0], task_grads)
        xi1 = jax.tree_util.tree_map(lambda g: g[1], task_grads)
        xi2 = jax.tree_util.tree_map(lambda g: g[2], task_grads)
        cross, _ = scaled_cross_gramian(xi1, xi2)  # both modes are scale invariant
        if inner == "exact":
            w = sdmgrad_exact_weights(cross, lamda=lamda)
        else:
            w = sdmgrad_weights(cross, state.w, lamda=lamda, niter=niter, lr=w_lr, momentum=momentum)
        t = w.shape[0]
        weights = t * (w + lamda / t) / (1.0 + lamda)
        combined, _ = clip_by_global_norm(weighted_sum(zeta, weights), max_norm)
        return combined, weights, SDMGradState(w)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, num_batches=3,
                    name="sdmgrad")
