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

Rank deficiency is handled as in the official code: eigenvalues below
``lambda_max * T * eps`` are dropped (identical gradients: rank 1; opposite
gradients: ``alpha = 0`` and ``d = 0``; zero gradients: ``alpha = 0``).

Aligned-MTL-UB (the official ``amtlub``) is this same balancer applied to the
gradients of the shared representation: ``rep_grad=True`` is allowed.

Deliberate differences: none in the weights (``torch.symeig`` becomes
``small_eigh`` (cyclic Jacobi) inside jit; the eigenvalue cut-off is a mask instead of
slicing). The official balancer can also rescale the decoders' gradients
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
    lam, v = small_eigh(gram)
    tol = jnp.max(lam) * t * jnp.finfo(gram.dtype).eps
    keep = lam > jnp.maximum(tol, jnp.finfo(gram.dtype).tiny)
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
