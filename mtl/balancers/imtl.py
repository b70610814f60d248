"""IMTL: impartial multi-task learning (Liu et al., ICLR 2021).

Two parts, usable alone or together (``mode``):

**IMTL-G** (gradient balance, ``mode="grad"``). Find ``alpha`` with
``sum_i alpha_i = 1`` such that the update ``d = sum_i alpha_i g_i`` has equal
projections on every unit task gradient ``u_i = g_i / |g_i|``:

    d . u_1 = d . u_i   for all i.

Closed form (paper, Eq. 7): with ``D = [g_1 - g_2, ..., g_1 - g_T]`` and
``U = [u_1 - u_2, ..., u_1 - u_T]`` (rows),

    alpha_{2:T} = g_1 U^T (D U^T)^{-1},       alpha_1 = 1 - sum_{i>=2} alpha_i.

Everything is a function of the Gramian ``G = J J^T`` (``g_i . u_j =
G_ij / sqrt(G_jj)``), so this implementation solves the equivalent ``T x T``
linear system

    sum_i alpha_i = 1,      (N G alpha)_i - (N G alpha)_r = 0  (i != r),

with ``N = diag(1 / |g_i|)`` and ``r`` the first task with a non-zero
gradient. It is solved for ``beta_i = |g_i| alpha_i`` (the columns of ``N G``
scale with the gradient norms, which may span decades; in ``beta`` the
system's matrix holds cosines), and by a pseudo-inverse (minimum-norm
``alpha``) when it is singular. For linearly independent gradients this is
exactly the paper's closed form (against it in float64, with gradient norms
spanning four decades, the update's direction agrees to cosine >= 0.9999; see
tests/balancers/test_exact_solutions.py); it stays finite for degenerate
inputs: identical gradients give ``alpha_i = 1/T``; a task with a zero
gradient has no direction, drops out of the equal-projection constraints and
gets ``alpha_i = 0``.

**IMTL-L** (loss balance, ``mode="loss"``). Each task gets a learnable scale
``s_i`` (initialised to 0) and the scaled loss ``e^{s_i} L_i - s_i``; the
network sees weights ``e^{s_i}`` and ``s_i`` descends

    d/ds_i (e^{s_i} L_i - s_i) = e^{s_i} L_i - 1,

whose zero makes every scaled loss ``e^{s_i} L_i = 1``. The scales are updated
inside ``update`` with their own Adam (explicit state, as in
:mod:`mtl.balancers.uw`); their gradient is this per-task derivative, not
weighted by ``alpha``, as in the paper and LibMTL (each scaled loss
back-propagates to its own ``s_i``).

**Hybrid** (``mode="hybrid"``, the default and the paper's full method):
IMTL-G applied to the gradients of the scaled losses ``e^{s_i} g_i``; the
update is ``sum_i alpha_i e^{s_i} g_i`` and the returned weights are
``alpha_i e^{s_i}``.

``grads`` is ``"shared"`` for ``grad``/``hybrid`` and ``"none"`` for ``loss``
(then ``combined = None`` and the weights ``e^{s_i}`` are applied to the
losses). The paper computes IMTL-G on gradients at the shared representation,
so ``rep_grad=True``. The paper also trains the task-specific parameters on
the scaled losses; what the heads receive is the train step's business.

Reference: L. Liu, Y. Li, Z. Kuang, J.-H. Xue, Y. Chen, W. Yang, Q. Liao,
W. Zhang. "Towards Impartial Multi-task Learning." ICLR 2021.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtl.balancers.base import NORM_FLOOR, Balancer, scaled_gramian, small_eigh, small_solve, unit_scaling, weighted_sum

MODES = ("hybrid", "grad", "loss")


class IMTLState(NamedTuple):
    log_scales: jax.Array  # (T,) s_i (stay 0 in mode "grad")
    opt_state: Any


def imtl_g_weights(gram: jax.Array) -> jax.Array:
    """IMTL-G ``alpha`` (summing to 1) from the ``(T, T)`` Gramian."""
    t = gram.shape[0]
    gram = gram.astype(jnp.float32)
    n, cmat, _, valid = unit_scaling(gram)  # G = s^2 diag(n) C diag(n), max(n) = 1
    nonzero = n > NORM_FLOOR
    ref = jnp.argmax(nonzero)  # first task with a non-zero gradient (0 if none)
    is_ref = jnp.arange(t) == ref
    rhs = is_ref.astype(jnp.float32)
    # In beta = n * alpha the projections are (N G alpha)_i = s (C beta)_i and sum(alpha) = sum(beta / n):
    # equilibrated columns (the gradient norms may span decades); the sum row is scaled to a largest entry of 1.
    inv_n = jnp.where(nonzero, 1.0 / n, 0.0)
    beta_rows = jnp.where(nonzero[:, None] & nonzero[None, :], cmat - cmat[ref][None, :], 0.0)
    sum_row = inv_n / jnp.max(inv_n)
    a_beta = jnp.where(is_ref[:, None], sum_row[None, :], beta_rows)
    a_beta = jnp.where(nonzero[:, None], a_beta, jnp.eye(t))  # a zero-gradient task: beta_i = 0
    beta = small_solve(a_beta, rhs / jnp.max(inv_n))
    alpha_scaled = beta * inv_n
    # Rank-deficient systems (identical gradients): the minimum-norm alpha of the unscaled system.
    proj = cmat * n[None, :]  # (N G)_ik / s: alpha -> projections u_i . d
    rows = jnp.where(nonzero[:, None], proj - proj[ref][None, :], 0.0)
    a = jnp.where(is_ref[:, None], jnp.ones((t, t), jnp.float32), rows)
    resid = jnp.max(jnp.abs(a_beta @ beta - rhs / jnp.max(inv_n)))
    # a near-null direction (float noise on identical gradients) blows alpha up: then (and only
    # then: lax.cond) the minimum-norm solution of the unscaled system
    ok = (jnp.all(jnp.isfinite(alpha_scaled)) & (resid <= 1e-4 * (jnp.max(jnp.abs(beta)) + 1.0))
          & (jnp.max(jnp.abs(alpha_scaled)) <= 1e3))
    alpha = jax.lax.cond(ok, lambda: alpha_scaled, lambda: min_norm_lstsq(a, rhs))
    return jnp.where(valid, alpha, jnp.full((t,), 1.0 / t, jnp.float32))


def min_norm_lstsq(a: jax.Array, b: jax.Array, rcond: float = 1e-6) -> jax.Array:
    """Minimum-norm least-squares solution of ``a x = b`` (``pinv(a) @ b``).

    Full rank: an exact plain-jnp solve. Rank deficient (identical or zero
    task gradients): through the symmetric eigen-decomposition of ``a^T a`` (plain-jnp Jacobi,
    see ``base.small_eigh``; a LAPACK pinv in the step can cost ~3 ms on CPU, see ``base``):
    eigenvalues below ``rcond`` times the largest are treated as zero, i.e.
    singular values below ``sqrt(rcond)`` of the largest (``a^T a`` squares the
    condition number, and float32 leaves it ~1e-7 of noise).
    """
    lam, v = small_eigh(a.T @ a)
    keep = lam > rcond * jnp.maximum(jnp.max(lam), jnp.finfo(a.dtype).tiny)
    inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    x_min_norm = v @ (inv * (v.T @ (a.T @ b)))
    if a.shape[0] != a.shape[1]:
        return x_min_norm
    # nonsingular (square a): the exact solve, without a^T a's squared conditioning;
    # an exactly singular a gives a zero pivot (inf/nan) and takes the branch above
    x = small_solve(a, b)
    scale = jnp.max(jnp.abs(a)) * jnp.max(jnp.abs(jnp.where(jnp.isfinite(x), x, 0.0))) + jnp.max(jnp.abs(b))
    ok = jnp.all(jnp.isfinite(x)) & (jnp.max(jnp.abs(a @ x - b)) <= 1e-4 * scale)
    # a near-null direction (float noise on identical gradients) blows x up where
    # pinv's cut-off would drop it: keep the minimum-norm solution then
    ok &= jnp.max(jnp.abs(x)) <= 1e3 * (jnp.max(jnp.abs(x_min_norm)) + 1.0)
    return jnp.where(ok, x, x_min_norm)


def imtl(*, mode: str = "hybrid", learning_rate: float = 1e-3, init_log_scale: float = 0.0) -> Balancer:
    """IMTL-G, IMTL-L or both.

    Args:
      mode: ``"hybrid"`` (IMTL-G on the scaled losses' gradients, default),
        ``"grad"`` (IMTL-G only) or ``"loss"`` (IMTL-L only).
      learning_rate: Adam step size for the loss scales ``s`` (the network's
        usual rate; LibMTL optimises them with the network's optimiser).
      init_log_scale: initial ``s_i`` (0: scale 1).

    Returns:
      A :class:`Balancer`; ``update`` returns ``(combined, weights, state)``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown IMTL mode {mode!r}; choose one of {MODES}")
    opt = optax.adam(learning_rate)
    learn_scales = mode in ("hybrid", "loss")

    def init(num_tasks: int) -> IMTLState:
        s = jnp.full((num_tasks,), init_log_scale if learn_scales else 0.0, jnp.float32)
        return IMTLState(s, opt.init(s))

    def step_scales(losses, state):
        s = state.log_scales
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        grad_s = jnp.exp(s) * losses - 1.0
        grad_s = jnp.where(jnp.isfinite(grad_s), grad_s, 0.0)
        updates, opt_state = opt.update(grad_s, state.opt_state, s)
        return IMTLState(optax.apply_updates(s, updates), opt_state)

    def update(losses, task_grads, state, *, key=None):
        del key
        scale = jnp.exp(state.log_scales)
        if mode == "loss":
            return None, scale, step_scales(losses, state)
        gram, _ = scaled_gramian(task_grads)  # alpha is scale invariant
        if mode == "hybrid":
            gram = scale[:, None] * gram * scale[None, :]
        alpha = imtl_g_weights(gram)
        weights = alpha * scale if mode == "hybrid" else alpha
        new_state = step_scales(losses, state) if mode == "hybrid" else state
        return weighted_sum(task_grads, weights), weights, new_state

    return Balancer(
        init=init,
        update=update,
        grads="none" if mode == "loss" else "shared",
        rep_grad=True,
        name="imtl",
    )
