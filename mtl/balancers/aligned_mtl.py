"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023).

The task gradients (rows of ``J``, ``T x D``) are replaced by an aligned set
``J_hat = W J`` whose Gramian is a multiple of the identity on the span of the
gradients: a well-conditioned (condition number 1) linear system of gradients,
whose components have equal magnitudes and are orthogonal. With the
eigendecomposition of the Gramian ``G = J J^T = V Lambda V^T`` restricted to
its ``r`` positive eigenvalues (rank ``r``; Sec. 4):

    W     = sigma V_r Lambda_r^(-1/2) V_r^T          (symmetric, T x T)
    J_hat = W J,   J_hat J_hat^T = sigma^2 V_r V_r^T  (= sigma^2 I at full rank)
    d     = sum_t J_hat_t = sum_i alpha_i g_i,   alpha = W 1

The scale ``sigma`` is ``sqrt(lambda_min)``, the smallest positive eigenvalue's
square root (``scale_mode="min"``, the paper's choice), or the median / mean
eigenvalue's (``"median"``, ``"rmse"``, options of the official code). The
update therefore never overshoots the weakest independent component.

Rank deficiency: eigenvalues that are zero up to float32 noise are dropped
(identical gradients: rank 1; opposite gradients: ``alpha = 0`` and ``d = 0``;
zero gradients: ``alpha = 0``). The official code drops eigenvalues below
``lambda_max * T * eps``; with float32 that also drops the genuine, small
eigenvalue of a task whose gradient is ~1e3 times smaller than another's
(eigenvalues 1e6 apart), so such a task is ignored. Here the rank is judged
on the norm-scaled problem instead: the pair ``(lambda_k, v_k)`` is kept when
the Rayleigh quotient ``lambda_k / |D v_k|^2`` of the cosine matrix
``D^-1 G D^-1`` (``D`` the gradient norms) at ``D v_k`` exceeds ``T eps`` times
the largest such quotient (the official rule when all norms are equal). The
cyclic Jacobi eigensolver computes the small eigenvalues of such graded
Gramians to high relative accuracy, so with gradient norms spanning four
decades (eigenvalues spanning eight) the update agrees with a float64
eigendecomposition to cosine >= 0.9999 (tests/balancers/test_exact_solutions.py).

Aligned-MTL-UB (the official ``amtlub``) is this same balancer applied to the
gradients of the shared representation: ``rep_grad=True`` is allowed.

Deliberate differences: the rank rule above; otherwise none in the weights
(``torch.symeig`` becomes ``small_eigh`` (cyclic Jacobi) inside jit; the
eigenvalue cut-off is a mask instead of slicing). The official balancer can also rescale the decoders' gradients
(``scale_decoder_grad``, off by default); that is the train step's business.

Reference: D. Senushkin, N. Patakin, A. Kuznetsov, A. Konushin. "Independent
Component Alignment for Multi-Task Learning." CVPR 2023.
Official code: github.com/SamsungLabs/MTL (``code/optim/aligned``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, gramian_balancer, small_eigh

SCALE_MODES = ("min", "median", "rmse")


def aligned_matrix(gram: jax.Array, *, scale_mode: str = "min") -> jax.Array:
    """The symmetric alignment matrix ``W`` with ``J_hat = W J`` for Gramian ``gram``."""
    t = gram.shape[0]
    gram = gram.astype(jnp.float32)
    lam, v = small_eigh(gram)
    # Numerical rank, judged on the norm-scaled problem: eigenvector v_k of G is the direction
    # z = D v_k (D = diag of gradient norms) of the cosine matrix C = D^-1 G D^-1, whose
    # Rayleigh quotient there is lam_k / |D v_k|^2; keep the pairs whose quotient stands out of
    # float32 noise, T eps relative to the largest (the official lam_max T eps rule when all norms are equal).
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
    spread = jnp.sum(jnp.square(norms[:, None] * v), axis=0)  # |D v_k|^2
    quotient = jnp.where(spread > 0, jnp.maximum(lam, 0.0) / jnp.where(spread > 0, spread, 1.0), 0.0)
    keep = (quotient > t * jnp.finfo(jnp.float32).eps * jnp.max(quotient)) & (lam > jnp.finfo(jnp.float32).tiny)
    rank = jnp.sum(keep)
    lam_k = jnp.where(keep, lam, 1.0)
    if scale_mode == "min":
        sigma2 = jnp.min(jnp.where(keep, lam, jnp.inf))
    elif scale_mode == "median":
        # torch.median of the kept eigenvalues (the lower middle one for an even count)
        asc = jnp.sort(jnp.where(keep, lam, jnp.inf))
        sigma2 = asc[jnp.maximum((rank - 1) // 2, 0)]
    elif scale_mode == "rmse":
        sigma2 = jnp.sum(jnp.where(keep, lam, 0.0)) / jnp.maximum(rank, 1)
    else:
        raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")
    sigma2 = jnp.where(rank > 0, sigma2, 0.0)
    inv_sqrt = jnp.where(keep, 1.0 / jnp.sqrt(lam_k), 0.0)
    return jnp.sqrt(sigma2) * (v * inv_sqrt[None, :]) @ v.T


def aligned_mtl(*, scale_mode: str = "min") -> Balancer:
    """Aligned-MTL (and Aligned-MTL-UB with ``rep_grad=True`` in the train step).

    Args:
      scale_mode: ``"min"`` (paper), ``"median"`` or ``"rmse"``: which eigenvalue
        sets the scale of the aligned gradients.

    Returns:
      A :class:`Balancer`; ``update`` returns ``d = sum_i alpha_i g_i`` and ``alpha = W 1``.
    """
    if scale_mode not in SCALE_MODES:
        raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {scale_mode!r}")

    return gramian_balancer(lambda gram, losses, key: aligned_matrix(gram, scale_mode=scale_mode).sum(axis=1),
                            name="aligned_mtl", rep_grad=True)
