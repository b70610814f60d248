"""The balancer interface shared by every gradient-balancing method.

A balancer is a value, in the style of optax: a factory with keyword-only
hyperparameters returns a :class:`Balancer`, a ``NamedTuple`` of pure functions
plus a few static facts the train step needs to know (which per-task gradients
to compute, how many batches to draw, whether a post-update hook exists).

    b = mtl.balancers.get("pcgrad")
    state = b.init(num_tasks)
    combined, weights, state = b.update(losses, task_grads, state, key=key)

* ``losses``: shape ``(T,)`` (or ``(K, T)`` when ``num_batches = K > 1``).
* ``task_grads``: a pytree whose leaves have a leading task axis ``(T, ...)``
  (``(K, T, ...)`` when ``num_batches > 1``), each task's gradient of the shared
  parameters (or of the shared representation, see ``mtl.train``); ``None``
  when ``grads == "none"``.
* ``combined``: the pytree of the combined gradient, same structure as one
  task's gradient; ``None`` for loss-weighting methods, which the train step
  applies as one backward pass of ``sum_i weights_i * loss_i``.
* ``weights``: ``(T,)`` task weights (for logging; for loss-weighting methods
  they are also what the train step applies).

State is an explicit pytree; randomness comes only from ``key``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

PyTree = Any

#: What per-task gradients a balancer consumes.
#: ``none``: losses only. ``shared``: per-task gradients of every shared parameter
#: (or of the shared representation when the train step runs with ``rep_grad``).
#: ``last_shared``: per-task gradients of the last shared layer only, used to
#: compute weights; the update is then a weighted loss sum (GradNorm).
GRAD_KINDS = ("none", "shared", "last_shared")


class Balancer(NamedTuple):
    """A gradient-balancing method: pure ``init``/``update`` plus static facts.

    Attributes:
      init: ``init(num_tasks) -> state``.
      update: ``update(losses, task_grads, state, *, key) -> (combined, weights, state)``.
      grads: which per-task gradients ``update`` needs (one of ``GRAD_KINDS``).
      rep_grad: whether the method is defined on gradients at the shared
        representation (LibMTL's ``rep_grad``); the train step refuses
        ``rep_grad=True`` for methods where this is False.
      num_batches: how many independent batches the train step draws per step.
        With ``K > 1`` losses have shape ``(K, T)`` and gradient leaves
        ``(K, T, ...)``; parameters are updated once per step.
      after_update: optional hook ``after_update(state, losses_before,
        losses_after) -> state`` called by the train step with the task losses
        recomputed on the same batch after the parameter update (FAMO).
      init_takes_grads_like: ``init`` also accepts ``grads_like``, a pytree
        shaped like one task's gradient, for state kept per gradient
        coordinate (MoCo, DB-MTL, ExcessMTL); the train step passes it.
      name: the registry name.
    """

    init: Callable[[int], PyTree]
    update: Callable[..., tuple]
    grads: str = "none"
    rep_grad: bool = True
    num_batches: int = 1
    after_update: Optional[Callable[..., PyTree]] = None
    init_takes_grads_like: bool = False
    name: str = ""

    @property
    def needs_grads(self) -> bool:
        """True when the method consumes per-task gradients."""
        return self.grads != "none"


class EmptyState(NamedTuple):
    """State of a stateless balancer."""


# ---------------------------------------------------------------------------
# Helpers shared by the gradient-based methods.
# ---------------------------------------------------------------------------


# XLA:CPU reduces along a leading axis of size T slowly (summing a (2, 1.1M)
# gradient over its task axis took 5-6 ms, the unrolled sum of the T rows
# 0.3-0.4 ms; 21-23 ms against 0.8-0.9 ms at T = 7; ``python -m benchmarks.xla_cpu_pitfalls``).
# T is small and static, so the helpers below unroll over tasks.


def sum_tasks(tree: PyTree) -> PyTree:
    """``sum_i tree[i]`` over the leading task axis of every leaf (unrolled)."""
    return jax.tree_util.tree_map(lambda g: sum(g[i] for i in range(g.shape[0])), tree)


def weighted_sum(task_grads: PyTree, weights: jax.Array) -> PyTree:
    """``sum_i weights[i] * task_grads[i]`` leaf by leaf (no flattening, unrolled over tasks)."""

    def leaf(g):
        w = weights.astype(g.dtype)
        return sum(w[i] * g[i] for i in range(g.shape[0]))

    return jax.tree_util.tree_map(leaf, task_grads)


def gramian(task_grads: PyTree) -> jax.Array:
    """The ``(T, T)`` Gramian ``J J^T`` of the task gradients, leaf by leaf.

    For T <= 3 it is computed as the T(T+1)/2 pairwise inner products (3x
    faster than a ``(T, D) @ (D, T)`` dot at T = 2 on CPU); for more tasks as
    that dot (the pairwise form was slower inside the T = 7 train step).
    """
    leaves = jax.tree_util.tree_leaves(task_grads)
    t = leaves[0].shape[0]
    if t > 3:
        return sum(m @ m.T for m in (g.reshape(t, -1) for g in leaves))
    entry = {}
    for i in range(t):
        for j in range(i, t):
            entry[i, j] = sum(jnp.sum(g[i] * g[j]) for g in leaves)
    return jnp.stack([jnp.stack([entry[min(i, j), max(i, j)] for j in range(t)]) for i in range(t)])


def min_norm_weights(gram: jax.Array, *, num_iters: int = 50, tol: float = 1e-6) -> jax.Array:
    """Weights of the min-norm point of the convex hull: ``argmin_{w in simplex} w^T G w``.

    The MGDA subproblem (Sener & Koltun 2018, Eq. 3) solved on the Gramian only:

    * ``T = 1``: ``w = [1]``.
    * ``T = 2``: the closed form of the paper's Algorithm 1,
      ``gamma = clip((G22 - G12) / (G11 + G22 - 2 G12), 0, 1)``, ``w = (gamma, 1 - gamma)``.
    * ``T >= 3``: Wolfe's min-norm-point algorithm (Wolfe 1976) run for a fixed
      ``max(num_iters, 5 T)`` steps inside jit (a converged iterate stays put). It is an
      active-set method: each major step adds the vertex ``g_j`` with the smallest
      ``x . g_j`` (``x`` the current point), each minor step solves the affine
      minimum-norm problem on the current support exactly and moves back into the
      simplex when it leaves it. Unlike Frank-Wolfe (used by the official code, 250
      iterations with a 1e-5 stopping rule) it reaches the exact optimum in finitely
      many steps, also when ``G`` is rank-deficient.

    Args:
      gram: ``(T, T)`` Gramian ``J J^T`` (symmetric positive semi-definite).
      num_iters: lower bound on the number of Wolfe steps (``5 T`` at least are run).
      tol: optimality tolerance, relative to the largest diagonal entry of ``gram``.

    Returns:
      ``(T,)`` weights on the probability simplex (uniform when ``gram`` is zero).
    """
    t = gram.shape[0]
    dtype = gram.dtype
    if t == 1:
        return jnp.ones((1,), dtype)
    if t == 2:
        a, b, c = gram[0, 0], gram[0, 1], gram[1, 1]
        denom = a + c - 2.0 * b
        ok = denom > 1e-12 * jnp.maximum(a + c, jnp.finfo(dtype).tiny)
        gamma = jnp.where(ok, (c - b) / jnp.where(ok, denom, 1.0), 0.5)
        gamma = jnp.clip(gamma, 0.0, 1.0)
        return jnp.stack([gamma, 1.0 - gamma])

    scale = jnp.max(jnp.diagonal(gram))
    valid = scale > jnp.finfo(dtype).tiny
    g = gram / jnp.where(valid, scale, 1.0)  # scale-free: largest squared norm 1
    eye = jnp.eye(t, dtype=dtype)

    def affine_min(supp):
        # min |sum_{i in S} v_i g_i|^2  s.t.  sum_{i in S} v_i = 1  (v may be negative)
        s = supp.astype(dtype)
        m = jnp.where(supp[:, None] & supp[None, :], g, eye * (1.0 - s)[:, None])
        kkt = jnp.block([[m, s[:, None]], [s[None, :], jnp.zeros((1, 1), dtype)]])
        rhs = jnp.concatenate([jnp.zeros((t,), dtype), jnp.ones((1,), dtype)])
        return jnp.where(supp, small_solve(kkt, rhs)[:t], 0.0)

    def body(_, carry):
        w, supp, minor, done = carry
        gw = g @ w
        j = jnp.argmin(gw)
        optimal = (w @ gw) - gw[j] <= tol
        # major step: add the vertex most opposed to the current point
        supp_major = supp.at[j].set(True)
        # minor step: affine minimiser of the support, or the move back into the simplex
        v = affine_min(supp)
        interior = jnp.all(jnp.where(supp, v > 0.0, True))
        shrink = supp & (v < w)
        ratios = jnp.where(shrink, w / jnp.where(shrink, w - v, 1.0), jnp.inf)
        theta = jnp.clip(jnp.min(ratios), 0.0, 1.0)
        w_line = w + theta * (v - w)
        drop = supp & ((w_line <= 1e-10) | (ratios == jnp.min(ratios)))
        w_line = jnp.where(drop, 0.0, w_line)
        w_line = w_line / jnp.sum(w_line)
        new_w = jnp.where(minor, jnp.where(interior, v, w_line), w)
        new_supp = jnp.where(minor, jnp.where(interior, supp, supp & ~drop), supp_major)
        new_minor = jnp.where(minor, ~interior, True)
        stop = done | (~minor & optimal)
        ok = ~stop & jnp.all(jnp.isfinite(new_w))
        return (jnp.where(ok, new_w, w), jnp.where(ok, new_supp, supp),
                jnp.where(ok, new_minor, False), ~ok)

    w0 = jax.nn.one_hot(jnp.argmin(jnp.diagonal(g)), t, dtype=dtype)
    carry = (w0, w0 > 0, jnp.array(False), jnp.array(False))
    w, _, _, _ = jax.lax.fori_loop(0, max(num_iters, 5 * t), body, carry)
    return jnp.where(valid, w, jnp.full((t,), 1.0 / t, dtype))


# ---------------------------------------------------------------------------
# Helpers for the Gramian-based solvers (MGDA, Nash-MTL, FairGrad, SDMGrad, MoDo).
# ---------------------------------------------------------------------------


def cross_gramian(a: PyTree, b: PyTree) -> jax.Array:
    """``A B^T`` for two task-gradient pytrees of the same structure: ``(T, T)``.

    ``cross_gramian(a, a) == gramian(a)``; with gradients from two independent
    batches it is the unbiased estimate of ``J J^T`` used by SDMGrad and MoDo.
    """
    def leaf(x, y):
        return x.reshape(x.shape[0], -1) @ y.reshape(y.shape[0], -1).T

    return sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf, a, b)))


def clip_by_global_norm(tree: PyTree, max_norm: float) -> tuple[PyTree, jax.Array]:
    """Scales ``tree`` so that its global norm is at most ``max_norm`` (``<= 0``: no clipping).

    Like ``torch.nn.utils.clip_grad_norm_`` (which the official Nash-MTL, FairGrad
    and SDMGrad code apply to the shared parameters' gradient). Returns the
    clipped tree and the scale applied (1 when not clipped).
    """
    if max_norm is None or max_norm <= 0:
        return tree, jnp.ones((), jnp.float32)
    sq = sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree_util.tree_leaves(tree))
    norm = jnp.sqrt(sq)
    scale = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
    return jax.tree_util.tree_map(lambda x: x * scale.astype(x.dtype), tree), scale


def alpha_fair_weights(gram: jax.Array, *, alpha: float = 1.0, num_iters: int = 20,
                       init: Optional[jax.Array] = None, ridge: float = 1e-8) -> jax.Array:
    """Solves ``(G w)_i = w_i^(-1/alpha)``, ``w > 0``, inside jit.

    The optimality condition of Nash-MTL (``alpha = 1``: ``G w = 1 / w``, Navon et
    al. 2022, Sec. 3) and of FairGrad (alpha-fair allocation, Ban & Ji 2024). It is
    the stationarity condition of the strictly convex problem

        min_{w > 0}  0.5 w^T G w - sum_i phi(w_i),   phi'(w) = w^(-1/alpha)

    (``phi = log`` for ``alpha = 1``), solved by Newton's method with a
    fraction-to-the-boundary rule and a backtracking (Armijo) line search, for a
    fixed ``num_iters`` steps. The problem is solved on ``G / |G|_F`` (plus
    ``ridge * I``, so that a solution exists when a non-negative combination of
    the gradients vanishes, e.g. opposite gradients) and mapped back: if ``w``
    solves it for ``G / s`` then ``w * s^(-alpha / (1 + alpha))`` solves it for ``G``.

    Args:
      gram: ``(T, T)`` Gramian.
      alpha: the fairness parameter (> 0).
      num_iters: Newton steps.
      init: optional positive starting direction (e.g. the previous step's
        weights); the start is the best point on the ray through it.
      ridge: Tikhonov term added to the normalised Gramian.

    Returns:
      ``(T,)`` positive weights (ones when ``gram`` is zero).
    """
    t = gram.shape[0]
    dtype = gram.dtype
    inv_a = 1.0 / alpha
    s = jnp.sqrt(jnp.sum(gram * gram))
    valid = s > jnp.finfo(dtype).tiny
    g = gram / jnp.where(valid, s, 1.0) + ridge * jnp.eye(t, dtype=dtype)

    def phi(w):
        if alpha == 1.0:
            return jnp.log(w)
        return w ** (1.0 - inv_a) / (1.0 - inv_a)

    def objective(w):
        return 0.5 * w @ g @ w - jnp.sum(phi(w))

    ones = jnp.ones((t,), dtype)
    d = ones if init is None else jnp.asarray(init, dtype)
    d = jnp.where(jnp.all(jnp.isfinite(d)) & jnp.all(d > 0), d, ones)
    q = jnp.maximum(d @ g @ d, jnp.finfo(dtype).tiny)
    # best point c * d on the ray: c^(1 + 1/alpha) = sum_i d_i^(1 - 1/alpha) / (d^T G d)
    w0 = d * (jnp.sum(d ** (1.0 - inv_a)) / q) ** (alpha / (alpha + 1.0))
    steps = 0.5 ** jnp.arange(12, dtype=dtype)

    def newton_step(_, w):
        grad = g @ w - w ** (-inv_a)
        hess = g + jnp.diag(inv_a * w ** (-inv_a - 1.0))
        delta = small_solve(hess, grad)
        pos = delta > 0
        t_max = jnp.minimum(1.0, jnp.min(jnp.where(pos, 0.99 * w / jnp.where(pos, delta, 1.0), 1.0)))
        cands = w[None, :] - (t_max * steps)[:, None] * delta[None, :]
        f_c = jax.vmap(objective)(cands)
        armijo = (f_c <= objective(w) - 1e-4 * t_max * steps * (grad @ delta)) & jnp.isfinite(f_c)
        w_new = jnp.where(jnp.any(armijo), cands[jnp.argmax(armijo)], w)
        return jnp.where(jnp.all(jnp.isfinite(w_new) & (w_new > 0)), w_new, w)

    w = jax.lax.fori_loop(0, num_iters, newton_step, w0)
    w = w * jnp.where(valid, s, 1.0) ** (-alpha / (1.0 + alpha))
    return jnp.where(valid, w, ones)


def gramian_balancer(weights_fn: Callable[..., jax.Array], *, name: str, rep_grad: bool = True,
                     max_norm: float = 0.0) -> Balancer:
    """A stateless method whose update is ``sum_i w_i g_i`` with ``w = weights_fn(G, losses, key)``.

    Most Jacobian methods only need the ``T x T`` Gramian ``G = J J^T`` (and at
    most the losses and a PRNG key) to find their weights (field notes); this
    builds their :class:`Balancer`. ``max_norm > 0`` clips the combined
    gradient's global norm (as Nash-MTL's and FairGrad's code do).
    """

    def init(num_tasks: int) -> EmptyState:
        del num_tasks
        return EmptyState()

    def update(losses, task_grads, state, *, key=None):
        weights = weights_fn(gramian(task_grads).astype(jnp.float32), losses, key)
        combined = weighted_sum(task_grads, weights)
        if max_norm > 0:
            combined, _ = clip_by_global_norm(combined, max_norm)
        return combined, weights, state

    return Balancer(init=init, update=update, grads="shared", rep_grad=rep_grad, name=name)


# ---------------------------------------------------------------------------
# Small dense linear algebra in plain jnp.
#
# The T x T systems of the solvers are tiny, but on XLA:CPU a LAPACK call
# (solve, eigh, pinv) in the same compiled program as the dot-product Gramian
# added ~3 ms to a 1.1M-parameter update (the call itself takes microseconds;
# ``python -m benchmarks.xla_cpu_pitfalls``). These unrolled versions avoid it
# and are exact up to floating-point error.
# ---------------------------------------------------------------------------


def small_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """Solves ``a x = b`` for a small square ``a`` (Gauss-Jordan, partial pivoting).

    Unrolled over the static size; a singular pivot yields inf/nan like LAPACK.
    """
    n = a.shape[0]
    vec = b.ndim == 1
    m = jnp.concatenate([a, b[:, None] if vec else b], axis=1)
    rows = jnp.arange(n)
    for k in range(n):
        p = jnp.argmax(jnp.where(rows >= k, jnp.abs(m[:, k]), -1.0))
        rk, rp = m[k], m[p]
        m = m.at[p].set(rk).at[k].set(rp)
        m = m.at[k].set(m[k] / m[k, k])
        factor = jnp.where(rows == k, 0.0, m[:, k])
        m = m - factor[:, None] * m[k][None, :]
    x = m[:, n:]
    return x[:, 0] if vec else x


def small_eigh(a: jax.Array, *, sweeps: int = 10) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations.

    Returns ``(eigenvalues ascending, eigenvectors as columns)`` like
    ``jnp.linalg.eigh``. Each sweep visits every off-diagonal pair once;
    convergence is quadratic, so a handful of sweeps reaches float precision
    for the T <= ~16 Gramians of multi-task learning.
    """
    n = a.shape[0]
    if n == 1:
        return jnp.diagonal(a), jnp.ones((1, 1), a.dtype)
    pairs = jnp.asarray([(p, q) for p in range(n) for q in range(p + 1, n)] * sweeps, jnp.int32)
    eye = jnp.eye(n, dtype=a.dtype)

    def rotate(carry, pq):
        m, v = carry
        p, q = pq[0], pq[1]
        theta = 0.5 * jnp.arctan2(2.0 * m[p, q], m[q, q] - m[p, p])
        c, s = jnp.cos(theta), jnp.sin(theta)
        r = eye.at[p, p].set(c).at[q, q].set(c).at[p, q].set(s).at[q, p].set(-s)
        return (r.T @ m @ r, v @ r), None

    (m, v), _ = jax.lax.scan(rotate, (a, eye), pairs)
    w = jnp.diagonal(m)
    order = jnp.argsort(w)
    return w[order], v[:, order]
