"""MGDA: the multiple-gradient descent algorithm as a min-norm problem (Sener & Koltun, NeurIPS 2018).

The common descent direction is the minimum-norm point of the convex hull of
the task gradients (Sec. 3.1, Eq. 3):

    w* = argmin_{w >= 0, sum_i w_i = 1}  | sum_i w_i g_i |^2 = w^T G w,
    d  = sum_i w*_i g_i,

with ``G = J J^T`` the ``T x T`` Gramian. Either ``d = 0`` (a Pareto-stationary
point) or ``-d`` decreases every task loss. The problem is solved exactly on
the Gramian inside jit by :func:`mtl.balancers.base.min_norm_weights`: the
closed form for two tasks (Algorithm 1) and, for more, an active-set method
(Wolfe's min-norm-point algorithm) on the norm-scaled problem, run until the
optimality conditions hold (a ``lax.while_loop``, capped). Against an exact
float64 solution the min-norm direction agrees to cosine >= 0.9999 with
gradient norms spanning four decades, T up to 8
(tests/balancers/test_exact_solutions.py). The paper describes a Frank-Wolfe
solver (Algorithm 2); the official training script calls
``MinNormSolver.find_min_norm_element``, which starts from the best pair of
tasks and runs projected-gradient steps with an exact line search until the
weights move less than 1e-5 (l1), an approximate solution.

Gradient normalisation (optional; "not included in the paper", official code):
the weights are computed for ``g_i / n_i`` with

    "none":  n_i = 1                    (the paper; default here, LibMTL and Nash-MTL's MGDA)
    "l2":    n_i = |g_i|
    "loss":  n_i = L_i
    "loss+": n_i = L_i |g_i|             (the official repository's sample config)

and, as in the official training script, applied to the *unnormalised* task
gradients: ``d = sum_i w*_i g_i`` (LibMTL instead combines the normalised
gradients ``sum_i w*_i g_i / n_i``).

MGDA-UB (Sec. 3.3) is this same balancer applied to the per-task gradients of
the shared representation ``z`` instead of the shared parameters: run the train
step with ``rep_grad=True`` (the step then sends ``d`` through the encoder in one
pullback). The bound ``|sum_i w_i grad_theta L_i| <= |dz/dtheta| |sum_i w_i grad_z L_i|``
justifies it, so ``rep_grad`` is allowed.

Deliberate differences from the official code: the exact two-task solution is
returned (the official solver's pairwise step returns 0.999 / 0.001 instead of
1 / 0 at the ends of a segment, both for two tasks and inside its line
searches, so it never puts exactly zero weight on a task), and for ``T >= 3``
the exact active-set solution replaces the official projected-gradient
iteration with its 1e-5 stopping rule (which stops far from the optimum when
the gradient norms differ by orders of magnitude: the steps are set by the
largest gradients). The weights sum to 1 (the official weights); Nash-MTL's
reimplementation rescales them to sum to ``T``.

Reference: O. Sener, V. Koltun. "Multi-Task Learning as Multi-Objective
Optimization." NeurIPS 2018. Official code: github.com/isl-org/MultiObjectiveOptimization.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, gramian_balancer, min_norm_weights

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def gradient_normalizers(gram: jax.Array, losses: jax.Array, normalization: str) -> jax.Array:
    """The per-task scales ``n_i`` of the official ``gradient_normalizers`` (safe at zero)."""
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
    if normalization == "none":
        n = jnp.ones_like(norms)
    elif normalization == "l2":
        n = norms
    elif normalization == "loss":
        n = losses
    elif normalization == "loss+":
        n = losses * norms
    else:
        raise ValueError(f"mgda normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return jnp.where(jnp.isfinite(n) & (n > 1e-12), n, 1.0)


def mgda(*, normalization: str = "none", num_iters: int = 50) -> Balancer:
    """MGDA (and MGDA-UB with ``rep_grad=True`` in the train step).

    Args:
      normalization: one of ``"none"`` (paper), ``"l2"``, ``"loss"``, ``"loss+"``;
        how the gradients are normalised before the min-norm problem.
      num_iters: the min-norm solver's iteration cap (``5 T`` at least; it stops
        at the optimum, after a few).

    Returns:
      A :class:`Balancer`; ``update`` returns ``d = sum_i w_i g_i`` and the
      simplex weights ``w``.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"mgda normalization must be one of {NORMALIZATIONS}, got {normalization!r}")

    def weights(gram, losses, key):
        n = gradient_normalizers(gram, jax.lax.stop_gradient(losses).astype(jnp.float32), normalization)
        return min_norm_weights(gram / (n[:, None] * n[None, :]), num_iters=num_iters)

    return gramian_balancer(weights, name="mgda", rep_grad=True)
