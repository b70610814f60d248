"""Every per-step solver against an independent exact solution (issue 11).

The Jacobians are badly scaled on purpose: task-gradient norms span four
decades (1e-2 ... 1e2, so the Gramian spans eight), with random (conflicting)
directions, strongly opposed pairs, nearly parallel gradients, and the issue's
recommendation case (one or two tasks 100-250x smaller), for T = 2, 3, 5, 8.
The references are computed here in float64 from first principles (support
enumeration of the simplex QP, a bisection on the CAGrad primal with scipy's
NNLS, Newton iterations verified by their residual, numpy's eigh, the IMTL
paper's closed form); the methods run jitted in float32 on the float32
Jacobian. Each check compares the update DIRECTION ``d = J^T w`` (cosine >=
0.9999; every optimum here is unique) and the method's own optimality
conditions in scale-free units (gradients normalised by their norms).

One compiled update per (method, T), reused for all cases.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import solve_triangular
from scipy.optimize import nnls

import mtl.balancers as mb
from mtl.balancers.aligned_mtl import aligned_matrix
from mtl.balancers.base import min_norm_weights
from mtl.balancers.cagrad import cagrad_coefficients
from mtl.balancers.fairgrad import fairgrad_weights
from mtl.balancers.imtl import imtl_g_weights
from mtl.balancers.nash_mtl import nash_weights
from mtl.balancers.sdmgrad import sdmgrad_exact_weights
from mtl.balancers.upgrad import upgrad_weights

D = 16  # gradient dimension (>= every T: the Gramians are non-singular)
TASKS = (2, 3, 5, 8)
COS_MIN = 0.9999


# ---------------------------------------------------------------------------
# Test Jacobians (float32 values; the references use the same values in float64)
# ---------------------------------------------------------------------------


def _spread_norms(rng, t):
    """Norms 10^-2 ... 10^2 (exactly four decades between the extremes), shuffled."""
    return rng.permutation(np.logspace(-2.0, 2.0, t))


def _case_spread(rng, t):  # random directions: conflicting pairs at random
    u = rng.normal(size=(t, D))
    return u / np.linalg.norm(u, axis=1, keepdims=True) * _spread_norms(rng, t)[:, None]


def _case_conflict(rng, t):  # task 1 nearly opposite task 0 (cos ~ -0.95), the others random
    u = rng.normal(size=(t, D))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    u[1] = -u[0] + 0.3 * u[1]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u * _spread_norms(rng, t)[:, None]


def _case_parallel(rng, t):  # nearly parallel (pairwise cos ~ 0.99)
    u = rng.normal(size=(1, D)) + 0.1 * rng.normal(size=(t, D))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u * _spread_norms(rng, t)[:, None]


def _case_issue(rng, t):  # the issue's case: one or two tasks 100-250x smaller than the rest
    u = rng.normal(size=(t, D))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    n = rng.uniform(0.5, 2.0, size=t)
    small = rng.permutation(t)[: 1 if t < 5 else 2]
    n[small] /= rng.uniform(100.0, 250.0, size=len(small))
    return u * n[:, None]


KINDS = {"spread": _case_spread, "conflict": _case_conflict, "parallel": _case_parallel, "issue": _case_issue}


@functools.cache
def cases(t):
    """``[(label, J)]`` with ``J`` float64 holding float32-representable values."""
    out = []
    for (kind, make), seed in itertools.product(KINDS.items(), range(2)):
        if kind == "conflict" and t < 2:
            continue
        rng = np.random.default_rng(1000 * t + 10 * seed + len(kind))
        jac = make(rng, t).astype(np.float32).astype(np.float64)
        out.append((f"{kind}/{seed}", jac))
    return out


# ---------------------------------------------------------------------------
# Exact references (float64)
# ---------------------------------------------------------------------------


def ref_simplex_qp(p, q=None):
    """``argmin_{w in simplex} 0.5 w^T P w + q^T w`` for positive definite ``P``.

    Enumerates the supports ``S``: on each, the KKT system in the scaled
    variables ``v = s * w`` (``s = sqrt(diag P)``, so the scaled matrix has a
    unit diagonal), keeps the primal-feasible solutions and returns the best.
    """
    t = p.shape[0]
    q = np.zeros(t) if q is None else q
    s = np.sqrt(np.diag(p))
    ps, qs, c = p / np.outer(s, s), q / s, 1.0 / s
    best, best_val = None, np.inf
    for r in range(1, t + 1):
        for supp in itertools.combinations(range(t), r):
            idx = np.array(supp)
            kkt = np.zeros((r + 1, r + 1))
            kkt[:r, :r] = ps[np.ix_(idx, idx)]
            kkt[:r, r] = -c[idx]
            kkt[r, :r] = c[idx]
            rhs = np.concatenate([-qs[idx], [1.0]])
            try:
                sol = np.linalg.solve(kkt, rhs)
            except np.linalg.LinAlgError:
                continue
            if np.any(sol[:r] < -1e-12 * np.max(np.abs(sol[:r]))):
                continue
            v = np.zeros(t)
            v[idx] = np.maximum(sol[:r], 0.0)
            w = v / s
            w /= w.sum()
            val = 0.5 * v @ ps @ v / np.sum(v * c) ** 2 + qs @ v / np.sum(v * c)
            if val < best_val:
                best, best_val = w, val
    return best


def ref_cagrad(jac, c):
    """CAGrad's primal ``max_d min_i g_i . d  s.t. |d - g0| <= c |g0|``.

    For a target ``t`` the closest point to ``g0`` of ``{d : g_i . d >= t}`` is
    ``g0 + U^T mu`` with ``mu >= 0`` solving an NNLS problem (``U`` the unit
    gradients); its distance grows with ``t``, and ``t*`` is found by bisection
    where it reaches the radius. Returns ``(d*, t*)``.
    """
    g0 = jac.mean(0)
    r = c * np.linalg.norm(g0)
    n = np.linalg.norm(jac, axis=1)
    u = jac / n[:, None]
    chol = np.linalg.cholesky(u @ u.T)
    ug0 = u @ g0

    def project(t):
        b = t / n - ug0  # need (U U^T) mu >= b
        mu, _ = nnls(chol.T, solve_triangular(chol, b, lower=True), maxiter=1000)
        return g0 + u.T @ mu

    lo = float(np.min(jac @ g0))
    hi = float(np.min(jac @ g0 + r * n))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(project(mid) - g0) <= r:
            lo = mid
        else:
            hi = mid
    d = project(lo)
    return d, float(np.min(jac @ d))


def ref_alpha_fair(gram, alpha):
    """``w > 0`` with ``(G w)_i = w_i^(-1/alpha)``: float64 Newton iterations on the stationarity
    condition of the convex ``0.5 x^T C x - sum_i k_i phi(x_i)`` in the norm-scaled variables
    ``x = n w`` (backtracking on the scaled residual), verified by the residual."""
    n = np.sqrt(np.diag(gram))
    cmat = gram / np.outer(n, n)
    inv_a = 1.0 / alpha
    k = n ** (inv_a - 1.0)  # (C x)_i = k_i x_i^(-1/alpha)
    m = k ** (alpha / (alpha + 1.0))  # the solution for orthogonal gradients

    def resid(x):
        return cmat @ x - k * x ** (-inv_a)

    x = m * (np.sum(k * m ** (1.0 - inv_a)) / (m @ cmat @ m)) ** (alpha / (alpha + 1.0))
    for _ in range(200):
        r = resid(x)
        if np.max(np.abs(r) / (np.abs(cmat) @ x + k * x ** (-inv_a))) < 1e-14:
            break
        step = np.linalg.solve(cmat + np.diag(inv_a * k * x ** (-inv_a - 1.0)), r)
        tau, merit = 1.0, np.sum((r / m) ** 2)
        while tau > 1e-12 and (np.any(x - tau * step <= 0)
                               or np.sum((resid(x - tau * step) / m) ** 2) > (1 - 1e-4 * tau) * merit):
            tau *= 0.5
        x = x - tau * step
    w = x / n
    rhs = w ** (-inv_a)
    assert np.max(np.abs(gram @ w - rhs) / (np.abs(gram) @ w + rhs)) < 1e-12
    return w


def ref_upgrad(jac, norm_eps=1e-4, reg_eps=1e-4):
    """torchjd's UPGrad weights: ``sum_i argmin_{v >= e_i / T} v^T G_n v`` with
    ``G_n = G / tr(G) + reg_eps I``; each box QP by scipy's NNLS."""
    t = jac.shape[0]
    gram = jac @ jac.T
    tr = np.trace(gram)
    gn = (np.zeros_like(gram) if tr < norm_eps else gram / tr) + reg_eps * np.eye(t)
    r = np.linalg.cholesky(gn).T  # gn = r^T r
    w = np.zeros(t)
    for i in range(t):
        lower = np.eye(t)[i] / t
        x, _ = nnls(r, -r @ lower, maxiter=1000)  # min |r x + r lower|^2, x >= 0
        w += lower + x
    return w


def ref_imtl(jac):
    """The IMTL-G paper's closed form (Eq. 7)."""
    u = jac / np.linalg.norm(jac, axis=1, keepdims=True)
    d = jac[0:1] - jac[1:]
    uu = u[0:1] - u[1:]
    rest = jac[0] @ uu.T @ np.linalg.inv(d @ uu.T)
    return np.concatenate([[1 - rest.sum()], rest])


def ref_aligned(jac):
    """Aligned-MTL's ``alpha = W 1``, ``W = sqrt(lambda_min) V Lambda^(-1/2) V^T`` (float64 eigh)."""
    lam, v = np.linalg.eigh(jac @ jac.T)
    assert lam[0] > lam[-1] * len(lam) * np.finfo(np.float64).eps  # full rank at float64 precision
    return np.sqrt(lam[0]) * (v / np.sqrt(lam)) @ v.T @ np.ones(len(lam))


# ---------------------------------------------------------------------------
# The methods' weight functions on the Gramian, jitted once (one compilation per T)
# ---------------------------------------------------------------------------

SDMGRAD_LAMDA = 0.3

#: name -> weights ``w`` of the update ``d = J^T w`` (SDMGrad: its inner weights) from the Gramian
METHODS = {
    "mgda": lambda gram: min_norm_weights(gram),
    "cagrad": lambda gram: cagrad_coefficients(gram, 0.5, 0),
    "nash_mtl": lambda gram: nash_weights(gram),
    # FairGrad with alpha = 1 runs Nash-MTL's solver, so it is tested with alpha = 2
    "fairgrad": lambda gram: fairgrad_weights(gram, alpha=2.0),
    "upgrad": lambda gram: upgrad_weights(gram),
    "imtl": lambda gram: imtl_g_weights(gram),
    "aligned_mtl": lambda gram: aligned_matrix(gram).sum(axis=1),
    "sdmgrad": lambda gram: sdmgrad_exact_weights(gram, lamda=SDMGRAD_LAMDA),
}


@functools.cache
def solved(t):
    """``{method: [weights (float64) for each case of T = t]}``: every method on the float32
    Gramian of each case, all methods in one compiled function per T (compiling per method
    and T cost ~40% more)."""
    run = jax.jit(lambda gram: {name: fn(gram) for name, fn in METHODS.items()})
    out = {name: [] for name in METHODS}
    for _, jac in cases(t):
        j32 = jac.astype(np.float32)
        res = run(jnp.asarray(j32 @ j32.T))
        for name in METHODS:
            out[name].append(np.asarray(res[name], np.float64))
    return out


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check(method, jac, w):
    """``(cosine to the exact direction, KKT residual, residual tolerance)`` of the method's
    weights ``w`` for the Jacobian ``jac``."""
    t = jac.shape[0]
    gram = jac @ jac.T
    n = np.linalg.norm(jac, axis=1)
    d = w @ jac
    if method == "mgda":
        ref = ref_simplex_qp(gram) @ jac
        # min-norm KKT: g_j . d >= |d|^2 for every j, in units of |g_j| |d|
        kkt = max(0.0, -np.min((jac @ d - d @ d) / (n * np.linalg.norm(d))))
        return _cos(d, ref), kkt, 1e-4
    if method == "cagrad":
        c = 0.5
        ref, t_star = ref_cagrad(jac, c)
        g0 = jac.mean(0)
        r = c * np.linalg.norm(g0)
        lam_w = w - 1.0 / t  # the dual weights, times lambda
        v = lam_w * n / np.sum(lam_w * n)  # on the unit gradients
        worst = np.min(jac @ d)
        # the ball; no task improves less than the optimal worst improvement t* (in units of
        # |g_i| |d|); complementary slackness: the tasks with weight are the worst ones
        kkt = max(np.linalg.norm(d - g0) / r - 1.0, float(np.max((t_star - jac @ d) / (n * np.linalg.norm(d)))),
                  float(np.sum(v * (jac @ d - worst) / n) / np.linalg.norm(d)))
        return _cos(d, ref), kkt, 1e-4
    if method in ("nash_mtl", "fairgrad"):
        alpha = 2.0 if method == "fairgrad" else 1.0
        wt = w
        ref = ref_alpha_fair(gram, alpha) @ jac
        # (G w)_i = w_i^(-1/alpha), relative to the size of its terms (G w cancels between conflicting tasks)
        rhs = np.abs(wt) ** (-1.0 / alpha)
        kkt = float(np.max(np.abs(gram @ wt - rhs) / (np.abs(gram) @ np.abs(wt) + rhs)))
        return _cos(d, ref), kkt, 1e-5
    if method == "upgrad":
        ref = ref_upgrad(jac) @ jac
        # no task is hurt beyond the regularisation: g_j . d >= -reg tr(G) |w_j|, in units of |g_j| |d|
        kkt = max(0.0, -np.min((jac @ d + 1e-4 * np.trace(gram) * np.abs(w)) / (n * np.linalg.norm(d))))
        return _cos(d, ref), kkt, 1e-4
    if method == "imtl":
        ref = ref_imtl(jac) @ jac
        proj = (jac / n[:, None]) @ d  # equal projections on the unit gradients
        return _cos(d, ref), float(np.ptp(proj) / np.linalg.norm(d)), 1e-4
    if method == "aligned_mtl":
        ref = ref_aligned(jac) @ jac
        # the aligned gradients W J are orthonormal up to sigma; d has the exact length
        kkt = abs(np.linalg.norm(d) / np.linalg.norm(ref) - 1.0)
        return _cos(d, ref), kkt, 1e-3
    if method == "sdmgrad":
        h = jac + SDMGRAD_LAMDA * jac.mean(0)  # min |J^T w + lamda g0|^2 on the simplex = min-norm of h_i
        ref = ref_simplex_qp(h @ h.T) @ h
        dh = w @ h
        kkt = max(0.0, -np.min((h @ dh - dh @ dh) / (np.linalg.norm(h, axis=1) * np.linalg.norm(dh))))
        return _cos(dh, ref), kkt, 1e-4
    raise KeyError(method)


@pytest.mark.parametrize("t", TASKS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_matches_the_exact_solution(method, t):
    bad = []
    for (label, jac), w in zip(cases(t), solved(t)[method]):
        cos, kkt, tol = check(method, jac, w)
        if not (cos >= COS_MIN and kkt <= tol):
            bad.append(f"{label}: cos {cos:.6f} kkt {kkt:.2e}")
    assert not bad, f"{method} T={t}: " + "; ".join(bad)


# ---------------------------------------------------------------------------
# Methods that take one step per iteration on a persistent weight (MoDo, MoCo):
# their fixed point is the exact solution of the regularised min-norm problem.
# ---------------------------------------------------------------------------


MODO_RHO = 0.1


@functools.cache
def _one_step_methods(t):
    """MoDo (equal batches) and MoCo (fallback mode, tracked Gramian given) from given weights, jitted."""
    modo, moco = mb.modo(gamma=1e-3, rho=MODO_RHO), mb.moco(rho=0.0)

    def run(jac, losses, lam_modo, lam_moco, gram_h):
        _, lam1, _ = modo.update(jnp.ones((3, t)), {"g": jnp.stack([jac] * 3)},
                                 modo.init(t)._replace(lambd=lam_modo), key=None)
        state = moco.init(t)._replace(lambd=lam_moco, gram_y=gram_h, step=jnp.array(10, jnp.int32))
        _, lam2, _ = moco.update(losses, {"g": jac}, state, key=None)
        return lam1, lam2

    return jax.jit(run)


@pytest.mark.parametrize("t", TASKS)
def test_modo_and_moco_fixed_points_are_the_exact_min_norm_points(t):
    """MoDo's step on ``0.5 |J^T lam|^2 + 0.5 rho |lam|^2`` and MoCo's on the tracked gradients'
    min-norm problem leave the exact minimiser where it is."""
    losses = np.linspace(0.5, 2.0, t).astype(np.float32).astype(np.float64)
    for label, jac in cases(t):
        lam_modo = ref_simplex_qp(jac @ jac.T + MODO_RHO * np.eye(t))
        h = jac / np.linalg.norm(jac, axis=1, keepdims=True) * losses[:, None]  # MoCo's normalised gradients
        lam_moco = ref_simplex_qp(h @ h.T)
        new_modo, new_moco = _one_step_methods(t)(*(np.asarray(x, np.float32) for x in
                                                    (jac, losses, lam_modo, lam_moco, h @ h.T)))
        cos_modo = _cos(np.asarray(new_modo, np.float64) @ jac, lam_modo @ jac)
        cos_moco = _cos(np.asarray(new_moco, np.float64) @ h, lam_moco @ h)
        assert cos_modo >= COS_MIN and cos_moco >= COS_MIN, (label, cos_modo, cos_moco)


# ---------------------------------------------------------------------------
# The references themselves, on problems with known answers
# ---------------------------------------------------------------------------


def test_references_on_hand_solvable_problems():
    c = np.array([1e-2, 1.0, 1e2])
    jac = np.diag(c)
    # min-norm point of orthogonal gradients: w_i proportional to 1 / c_i^2
    np.testing.assert_allclose(ref_simplex_qp(jac @ jac.T), (1 / c**2) / np.sum(1 / c**2), rtol=1e-10)
    # Nash: alpha_i = 1 / c_i; alpha-fair: w_i = c_i^(-2 a / (a + 1))
    np.testing.assert_allclose(ref_alpha_fair(jac @ jac.T, 1.0), 1 / c, rtol=1e-10)
    np.testing.assert_allclose(ref_alpha_fair(jac @ jac.T, 2.0), c ** (-4 / 3), rtol=1e-10)
    # Aligned-MTL: weights c_min / c_i; IMTL: d has equal projections, alpha proportional to 1 / c_i
    np.testing.assert_allclose(ref_aligned(jac), c[0] / c, rtol=1e-10)
    np.testing.assert_allclose(ref_imtl(jac), (1 / c) / np.sum(1 / c), rtol=1e-10)
    # CAGrad on two orthogonal equal gradients: d = (1 + c) g0 by symmetry
    d, t_star = ref_cagrad(np.eye(2), 0.5)
    np.testing.assert_allclose(d, [0.75, 0.75], rtol=1e-10)
    assert abs(t_star - 0.75) < 1e-10
    # UPGrad without conflict: the mean
    np.testing.assert_allclose(ref_upgrad(np.array([[1.0, 0.2], [0.3, 1.0]]), reg_eps=0.0), [0.5, 0.5], atol=1e-12)
