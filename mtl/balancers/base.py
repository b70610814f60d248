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

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

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
      run_facts: facts of the training run the factory takes as keywords
        (e.g. ``("steps_per_epoch",)`` for DWA, ``("rep_grad",)`` for
        GradDrop); their factory default is ``None``, "filled in by the
        training loop" (see :func:`with_run_facts`).
      bind: ``bind(**facts) -> Balancer``: the same method rebuilt with those
        run facts (facts the user gave the factory explicitly are kept);
        ``None`` for methods without run facts.
    """

    init: Callable[[int], PyTree]
    update: Callable[..., tuple]
    grads: str = "none"
    rep_grad: bool = True
    num_batches: int = 1
    after_update: Callable[..., PyTree] | None = None
    init_takes_grads_like: bool = False
    name: str = ""
    run_facts: tuple[str, ...] = ()
    bind: Callable[..., Balancer] | None = None

    @property
    def needs_grads(self) -> bool:
        """True when the method consumes per-task gradients."""
        return self.grads != "none"


def with_run_facts(balancer: Balancer, **facts) -> Balancer:
    """Returns ``balancer`` rebuilt with the run facts it declares (``steps_per_epoch``, ``rep_grad``, ...).

    The training loop calls this with everything it knows about the run;
    facts the user passed explicitly to the factory are kept, facts the method
    does not declare (and facts given as ``None``) are ignored, and a method
    without run facts is returned unchanged::

        b = with_run_facts(mtl.balancers.get("dwa"), steps_per_epoch=390, rep_grad=False)
    """
    given = {k: v for k, v in facts.items() if k in balancer.run_facts and v is not None}
    if not given or balancer.bind is None:
        return balancer
    return balancer.bind(**given)


def declare_run_facts(balancer: Balancer, factory: Callable[..., Balancer], hparams: dict,
                      facts: tuple[str, ...]) -> Balancer:
    """Attaches ``run_facts`` and ``bind`` to ``balancer``, built by ``factory(**hparams)``.

    ``bind(**given)`` calls ``factory`` again with ``hparams`` plus those of the
    ``given`` facts that ``hparams`` left ``None`` (the user's explicit values win).
    """

    def bind(**given) -> Balancer:
        fill = {k: v for k, v in given.items() if k in facts and hparams.get(k) is None and v is not None}
        return factory(**{**hparams, **fill}) if fill else balancer

    return balancer._replace(run_facts=tuple(facts), bind=bind)


def concrete(x) -> bool:
    """False for a traced hyperparameter (one replica's value in a sweep, checked on the host
    before tracing), whose range checks the factory then skips."""
    return not isinstance(x, jax.core.Tracer)


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


def scaled_gramian(task_grads: PyTree) -> tuple[jax.Array, jax.Array]:
    """``(G / s^2, s)``: the float32 Gramian, rescaled only when it would overflow.

    ``s = 1`` (and ``G`` is :func:`gramian`'s) unless some entry is not finite,
    e.g. gradients of ~1e19 or more whose squares overflow float32; then the
    Gramian is recomputed on the gradients divided by ``s``, the power of two
    just above their largest magnitude (an exact division), inside a
    ``lax.cond``, so the common path costs nothing extra. Scale-invariant
    weights can use ``G / s^2`` as it is; weights homogeneous in ``G`` map back
    with the power of ``s`` they scale with (:func:`gramian_balancer`'s
    ``scale_power``).
    """
    gram = gramian(task_grads).astype(jnp.float32)

    def rescaled(_):
        s = _pow2_above(_max_abs(jax.tree_util.tree_leaves(task_grads)))
        scaled = jax.tree_util.tree_map(lambda x: x / s.astype(x.dtype), task_grads)
        return gramian(scaled).astype(jnp.float32), s

    return jax.lax.cond(jnp.all(jnp.isfinite(gram)), lambda _: (gram, jnp.ones((), jnp.float32)), rescaled, None)


def _max_abs(leaves) -> jax.Array:
    """The largest magnitude over a list of arrays, float32."""
    return functools.reduce(jnp.maximum, [jnp.max(jnp.abs(x)).astype(jnp.float32) for x in leaves])


def _pow2_above(m: jax.Array) -> jax.Array:
    """The smallest power of two >= ``m`` (1 for ``m <= 0`` or not finite)."""
    ok = jnp.isfinite(m) & (m > 0)
    return jnp.where(ok, jnp.exp2(jnp.ceil(jnp.log2(jnp.where(ok, m, 1.0)))), 1.0).astype(jnp.float32)


def task_norms(task_grads: PyTree, *, per_leaf: bool = False) -> jax.Array:
    """Per-task gradient norms ``(T,)`` (``per_leaf``: ``(T, leaves)``), float32, robust to overflow.

    Sums of squares are recomputed on the gradients divided by the power of two
    above their largest magnitude only when they are not finite (``lax.cond``),
    so gradients of 1e30 have norms of ~1e30 instead of inf.
    """
    leaves = jax.tree_util.tree_leaves(task_grads)
    t = leaves[0].shape[0]

    def sq(scale):
        return jnp.stack([jnp.sum(jnp.square(g.astype(jnp.float32) / scale).reshape(t, -1), axis=1) for g in leaves],
                         axis=1)  # (T, leaves)

    plain = sq(jnp.ones((), jnp.float32))

    def rescaled(_):
        m = _pow2_above(_max_abs(leaves))
        return sq(m), m

    sqs, m = jax.lax.cond(jnp.all(jnp.isfinite(plain)), lambda _: (plain, jnp.ones((), jnp.float32)), rescaled, None)
    return m * jnp.sqrt(sqs if per_leaf else jnp.sum(sqs, axis=1))


def project_simplex(z: jax.Array) -> jax.Array:
    """Euclidean projection onto the probability simplex, robust to huge entries.

    ``optax.projections.projection_simplex`` after subtracting ``max(z)`` (the
    projection is invariant to adding a constant to every entry; the shift
    keeps ``z ~ 1e30`` from losing the O(1) part in its cumulative sums).
    Non-finite entries are clipped to +-1e30 first.
    """
    z = jnp.clip(jnp.nan_to_num(z, nan=0.0), -1e30, 1e30)
    return optax.projections.projection_simplex(z - jnp.max(z))


# ---------------------------------------------------------------------------
# The simplex solver (MGDA's min-norm point, CAGrad's dual, SDMGrad's inner problem).
# ---------------------------------------------------------------------------

#: Tasks whose gradient norm is below this fraction of the largest are treated as zero.
NORM_FLOOR = 1e-8


def unit_scaling(gram: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Splits ``G = s^2 diag(n) C diag(n)`` with a unit-diagonal ``C`` (the cosines).

    Returns ``(n, C, s, valid)``: ``n`` the gradient norms divided by the
    largest, ``s``, so ``max(n) = 1``; a task whose norm is below
    ``NORM_FLOOR`` (relative) gets the stand-in norm ``NORM_FLOOR`` and a
    direction orthogonal to every other task (``C`` row ``e_i``). ``valid`` is
    False when every gradient is zero (or ``G`` is not finite).

    Solving on ``C`` instead of ``G`` is what keeps float32 solvers accurate
    when the gradient norms span decades: ``G``'s entries span twice as many.
    """
    t = gram.shape[0]
    dtype = gram.dtype
    sq = jnp.maximum(jnp.diagonal(gram), 0.0)
    s = jnp.sqrt(jnp.max(sq))
    valid = jnp.isfinite(s) & (s > 0) & jnp.all(jnp.isfinite(gram))
    s_safe = jnp.where(valid, s, 1.0)
    n = jnp.sqrt(sq) / s_safe
    small = ~(n > NORM_FLOOR)
    n = jnp.where(small, NORM_FLOOR, n)
    cmat = (gram / (s_safe * s_safe)) / (n[:, None] * n[None, :])
    eye = jnp.eye(t, dtype=bool)
    cmat = jnp.where(small[:, None] | small[None, :], 0.0, jnp.clip(cmat, -1.0, 1.0))
    cmat = jnp.where(eye, 1.0, cmat).astype(dtype)
    return n, jnp.where(valid, cmat, jnp.eye(t, dtype=dtype)), s_safe, valid


def simplex_solve(gram: jax.Array, lin: jax.Array | None = None, kappa: jax.Array | None = None, *,
                  max_iters: int, tol: float = 1e-5, ridge: float = 1e-7) -> jax.Array:
    """``argmin_{w in simplex}  lin . w + kappa |J^T w|``, exactly, on the Gramian ``G = J J^T``.

    With ``lin = None`` it is the minimum-norm point of the convex hull of the
    gradients, ``argmin |J^T w|`` (MGDA); with ``lin = G 1/T`` and
    ``kappa = c |g_0|`` it is CAGrad's dual.

    An active-set method in the spirit of Wolfe's min-norm-point algorithm,
    run on the norm-scaled problem (``v = n w``, unit gradients ``u_i``, cosine
    matrix ``C``, see :func:`unit_scaling`; the simplex becomes
    ``c . v = 1, v >= 0`` with ``c = 1/n``; ``a = lin / n``). On a support ``S``
    the minimiser of the objective over the affine hull is in closed form:
    with ``p`` the affine minimum-norm point and ``q`` the solution of the same
    bordered KKT system with right-hand side ``-a / kappa``,

        [C_S  -c_S] [p  q ]   [0  -a_S / kappa]
        [c_S^T  0 ] [.  . ] = [1        0     ],

    it is ``v = p + rho q``, ``rho = |u_v|``, the positive root of
    ``(1 - q^T C q) rho^2 - 2 (p^T C q) rho - p^T C p = 0``; when
    ``q^T C q >= 1`` the objective is unbounded below on the affine hull and
    ``q`` is a descent direction along it. (For ``lin = None``, ``q = 0`` and
    ``v = p``.) Each iteration either accepts that minimiser when it lies in
    the simplex and adds the task whose KKT condition is most violated
    (relative to its terms), or moves towards it until a weight reaches zero
    and drops that task. The objective falls strictly at every added task, so
    it ends after finitely many steps; a ``lax.while_loop`` stops when every
    KKT condition holds to ``tol`` (or ``|J^T w|`` is zero to float32
    precision), capped at ``max_iters``. ``ridge`` is added to the diagonal of
    ``C`` (linearly dependent gradients).

    Args:
      gram: ``(T, T)`` Gramian, positive semi-definite.
      lin: optional ``(T,)`` linear term, in the units of ``gram``.
      kappa: weight of the norm term (scalar, > 0 with ``lin``).
      max_iters: iteration cap.
      tol: relative tolerance of the KKT conditions.
      ridge: added to the diagonal of the cosine matrix.

    Returns:
      ``(T,)`` weights on the simplex (uniform when every gradient is zero).
    """
    t = gram.shape[0]
    dtype = jnp.float32
    gram = gram.astype(dtype)
    if t == 1:
        return jnp.ones((1,), dtype)
    n, cmat, s, valid = unit_scaling(gram)
    cmat = cmat + ridge * jnp.eye(t, dtype=dtype)
    c = 1.0 / n
    if lin is None:
        a = jnp.zeros((t,), dtype)
        kap = jnp.ones((), dtype)
    else:
        a = jnp.where(jnp.isfinite(lin), lin, 0.0).astype(dtype) / (s * n)  # u_i . g_0 (for CAGrad)
        kap = jnp.asarray(kappa, dtype)
        unit = jnp.maximum(jnp.max(jnp.abs(a)), kap)
        valid &= (unit > 0) & (kap > 0)
        unit = jnp.where(unit > 0, unit, 1.0)
        a, kap = a / unit, jnp.where(kap > 0, kap / unit, 1.0)
    eye = jnp.eye(t + 1, dtype=dtype)
    ext = jnp.concatenate([jnp.ones((t, t + 1), dtype), jnp.zeros((1, t + 1), dtype)])  # C's block of the KKT matrix
    big = jnp.pad(cmat, ((0, 1), (0, 1)))
    rhs_q = jnp.concatenate([-a / kap, jnp.zeros((1,), dtype)])
    last = (jnp.arange(t + 1) == t).astype(dtype)

    def body(carry):
        v, supp, _, it = carry
        # the bordered KKT matrix of the support, its border scaled to a largest entry of 1
        c_s = jnp.where(supp, c, 0.0)
        c_max = jnp.max(c_s)
        border = jnp.concatenate([c_s / c_max, jnp.zeros((1,), dtype)])
        sx = jnp.concatenate([supp, jnp.ones((1,), bool)])
        kkt = jnp.where(sx[:, None] & sx[None, :], big * ext - border[:, None] * last[None, :]
                        + last[:, None] * border[None, :], eye)
        sol = small_solve(kkt, jnp.stack([last / c_max, jnp.where(sx, rhs_q, 0.0)], axis=1))[:t]
        cm = cmat @ sol  # C p, C q
        forms = sol.T @ cm  # [[p'Cp, p'Cq], [q'Cp, q'Cq]]
        a0, a1, a2 = jnp.maximum(forms[0, 0], 0.0), forms[0, 1], 1.0 - forms[1, 1]
        bounded = a2 > 1e-6
        a2 = jnp.where(bounded, a2, 1.0)
        rho = (a1 + jnp.sqrt(jnp.maximum(a1 * a1 + a2 * a0, 0.0))) / a2
        p, q = sol[:, 0], sol[:, 1]
        cand = p + rho * q  # zero off the support
        direction = jnp.where(bounded, cand - v, q)
        neg = supp & (direction < 0.0)
        ratios = jnp.where(neg, v / jnp.where(neg, -direction, 1.0), jnp.inf)
        theta_b = jnp.min(ratios)
        interior = bounded & (theta_b >= 1.0)  # then cand >= 0
        # accept the affine minimiser and test the KKT conditions off the support
        scale = c @ cand
        v_in = cand / scale
        cv = (cm[:, 0] + rho * cm[:, 1]) / scale  # C v_in
        rho_in = rho / scale  # |u_v| at v_in
        stationary = rho_in <= 1e-6 * jnp.sum(v_in)  # u_v = 0 to float32 precision: nothing to improve
        grad = a + kap * cv / jnp.where(stationary, 1.0, rho_in)  # dF/dv
        mult = v_in @ grad  # the multiplier of c . v = 1 (complementary slackness on the support)
        viol = jnp.where(supp, -jnp.inf, (mult * c - grad) / (jnp.abs(grad) + jnp.abs(mult * c) + 1e-30))
        j = jnp.argmax(viol)
        optimal = (jnp.max(viol) <= tol) | stationary
        # or move to the boundary and drop the blocking task
        theta = jnp.where(bounded, jnp.minimum(theta_b, 1.0), theta_b)
        v_line = v + theta * direction
        drop = supp & ((ratios <= theta_b) | (v_line <= 0.0))
        v_line = jnp.where(drop, 0.0, jnp.maximum(v_line, 0.0))
        v_line = v_line / (c @ v_line)
        new_v = jnp.where(interior, v_in, v_line)
        new_supp = jnp.where(interior, supp | ((jnp.arange(t) == j) & ~optimal), supp & ~drop)
        ok = jnp.all(jnp.isfinite(new_v)) & jnp.any(new_supp)
        return (jnp.where(ok, new_v, v), jnp.where(ok, new_supp, supp), ~ok | (interior & optimal), it + 1)

    j0 = jnp.argmin(n * (a + kap))  # the best vertex
    v0 = jnp.where(jnp.arange(t) == j0, n, 0.0)
    carry = (v0, v0 > 0, ~valid, jnp.zeros((), jnp.int32))
    v, _, _, _ = jax.lax.while_loop(lambda cr: ~cr[2] & (cr[3] < max_iters), body, carry)
    w = v / n
    w = w / jnp.sum(w)
    return jnp.where(valid & jnp.all(jnp.isfinite(w)), w, jnp.full((t,), 1.0 / t, dtype))


def min_norm_weights(gram: jax.Array, *, num_iters: int = 50, tol: float = 1e-5) -> jax.Array:
    """Weights of the min-norm point of the convex hull: ``argmin_{w in simplex} w^T G w``.

    The MGDA subproblem (Sener & Koltun 2018, Eq. 3) solved on the Gramian only:

    * ``T = 1``: ``w = [1]``.
    * ``T = 2``: the closed form of the paper's Algorithm 1,
      ``gamma = clip((G22 - G12) / (G11 + G22 - 2 G12), 0, 1)``, ``w = (gamma, 1 - gamma)``.
    * ``T >= 3``: :func:`simplex_solve` (an exact active-set method on the
      norm-scaled problem, Wolfe's min-norm-point algorithm there), stopped
      when the optimality conditions hold to ``tol``, at most
      ``max(num_iters, 5 T)`` steps. It reaches the exact optimum in finitely
      many steps, also when the gradient norms span many decades or ``G`` is
      rank-deficient. (The official code's ``find_min_norm_element`` starts
      from the best pair and runs projected gradient steps with an exact line
      search until the weights move less than 1e-5 in l1 norm.)

    Args:
      gram: ``(T, T)`` Gramian ``J J^T`` (symmetric positive semi-definite).
      num_iters: lower bound on the iteration cap (``5 T`` at least).
      tol: relative tolerance of the optimality conditions.

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
    return simplex_solve(gram, max_iters=max(num_iters, 5 * t), tol=tol).astype(dtype)


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


def scaled_cross_gramian(a: PyTree, b: PyTree) -> tuple[jax.Array, jax.Array]:
    """``(A B^T / s^2, s)``, float32: :func:`cross_gramian`, rescaled like :func:`scaled_gramian`
    (``s = 1`` unless an entry overflows; then both trees are divided by the power of two
    above their largest magnitude)."""
    gram = cross_gramian(a, b).astype(jnp.float32)

    def rescaled(_):
        s = _pow2_above(_max_abs(jax.tree_util.tree_leaves((a, b))))
        div = lambda tree: jax.tree_util.tree_map(lambda x: x / s.astype(x.dtype), tree)
        return cross_gramian(div(a), div(b)).astype(jnp.float32), s

    return jax.lax.cond(jnp.all(jnp.isfinite(gram)), lambda _: (gram, jnp.ones((), jnp.float32)), rescaled, None)


def clip_by_global_norm(tree: PyTree, max_norm: float) -> tuple[PyTree, jax.Array]:
    """Scales ``tree`` so that its global norm is at most ``max_norm`` (``<= 0``: no clipping).

    Like ``torch.nn.utils.clip_grad_norm_`` (which the official Nash-MTL, FairGrad
    and SDMGrad code apply to the shared parameters' gradient). Returns the
    clipped tree and the scale applied (1 when not clipped). A norm whose
    square overflows float32 is recomputed on the tree divided by its largest
    magnitude (``lax.cond``: only then).
    """
    if concrete(max_norm) and (max_norm is None or max_norm <= 0):
        return tree, jnp.ones((), jnp.float32)
    leaves = jax.tree_util.tree_leaves(tree)
    sq = sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves)

    def rescaled(_):
        m = _pow2_above(_max_abs(leaves))
        return m * jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32) / m)) for x in leaves))

    norm = jax.lax.cond(jnp.isfinite(sq), lambda _: jnp.sqrt(sq), rescaled, None)
    clip = norm > max_norm
    if not concrete(max_norm):  # a swept value: <= 0 still means no clipping
        clip = clip & (max_norm > 0)
    scale = jnp.where(clip, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
    return jax.tree_util.tree_map(lambda x: x * scale.astype(x.dtype), tree), scale


def alpha_fair_weights(gram: jax.Array, *, alpha: float = 1.0, num_iters: int = 50,
                       init: jax.Array | None = None, ridge: float = 1e-8, tol: float = 1e-6) -> jax.Array:
    """Solves ``(G w)_i = w_i^(-1/alpha)``, ``w > 0``, inside jit, to a convergence test.

    The optimality condition of Nash-MTL (``alpha = 1``: ``G w = 1 / w``, Navon et
    al. 2022, Sec. 3) and of FairGrad (alpha-fair allocation, Ban & Ji 2024).

    Norm scaling: with ``G = s^2 diag(n) C diag(n)`` (:func:`unit_scaling`,
    ``max(n) = 1``) and ``x = n w`` the condition reads

        (C x)_i = k_i x_i^(-1/alpha),      k_i = n_i^(1/alpha - 1),

    the stationarity condition of the strictly convex problem

        min_{x > 0}  0.5 x^T C x - sum_i k_i phi(x_i),    phi'(x) = x^(-1/alpha)

    (``phi = log`` for ``alpha = 1``), whose Hessian ``C + diag(k x^(-1/alpha-1)
    / alpha)`` stays well conditioned however far apart the gradient norms are
    (at orthogonal gradients ``x_i = k_i^(alpha/(alpha+1))``, Hessian diagonal
    ``1 + 1/alpha``). It is solved by Newton's method with a
    fraction-to-the-boundary rule and a backtracking line search on the
    scaled residual ``|(C x - k x^(-1/alpha)) / k^(alpha/(alpha+1))|^2`` (the
    Newton direction descends it; unlike the objective it keeps its float32
    precision near the solution), in a ``lax.while_loop`` that stops when
    every equation holds to ``tol`` relative to its terms, at most
    ``num_iters`` steps. Then ``w = x / n * s^(-2 alpha / (alpha + 1))`` (the
    solution's homogeneity in ``G``). ``ridge`` is added to the diagonal of
    ``C``, so that a solution exists when a non-negative combination of the
    gradients vanishes (e.g. opposite gradients).

    Args:
      gram: ``(T, T)`` Gramian.
      alpha: the fairness parameter (> 0).
      num_iters: cap on the Newton steps.
      init: optional positive starting direction (e.g. the previous step's
        weights); the start is the best point on the ray through it.
      ridge: added to the diagonal of the cosine matrix ``C``.
      tol: relative residual at which the iteration stops.

    Returns:
      ``(T,)`` positive weights (ones when ``gram`` is zero).
    """
    t = gram.shape[0]
    dtype = jnp.float32
    gram = gram.astype(dtype)
    inv_a = 1.0 / alpha
    n, cmat, s, valid = unit_scaling(gram)
    cmat = cmat + ridge * jnp.eye(t, dtype=dtype)
    k = n ** (inv_a - 1.0)
    m = k ** (alpha / (alpha + 1.0))  # the solution for orthogonal gradients; the residual's scale

    def phi_prime(x):
        return x ** (-inv_a)

    def residual(x):
        return cmat @ x - k * phi_prime(x)

    def rel_error(x):
        terms = jnp.abs(cmat) @ x + k * phi_prime(x)
        return jnp.max(jnp.abs(residual(x)) / terms)

    ones = jnp.ones((t,), dtype)
    d = m if init is None else n * jnp.asarray(init, dtype)
    d = jnp.where(jnp.all(jnp.isfinite(d)) & jnp.all(d > 0), d, m)
    q = jnp.maximum(d @ cmat @ d, jnp.finfo(dtype).tiny)
    # best point c * d on the ray: c^(1 + 1/alpha) = sum_i k_i d_i^(1 - 1/alpha) / (d^T C d)
    x0 = d * (jnp.sum(k * d ** (1.0 - inv_a)) / q) ** (alpha / (alpha + 1.0))
    steps = 0.5 ** jnp.arange(16, dtype=dtype)

    def newton_step(carry):
        x, _, it = carry
        r = residual(x)
        hess = cmat + jnp.diag(inv_a * k * x ** (-inv_a - 1.0))
        delta = small_solve(hess, r)
        pos = delta > 0
        t_max = jnp.minimum(1.0, jnp.min(jnp.where(pos, 0.99 * x / jnp.where(pos, delta, 1.0), 1.0)))
        cands = x[None, :] - (t_max * steps)[:, None] * delta[None, :]
        merit0 = jnp.sum(jnp.square(r / m))
        merit = jnp.sum(jnp.square(jax.vmap(residual)(cands) / m), axis=1)
        good = (merit <= (1.0 - 1e-4 * t_max * steps) * merit0) & jnp.all(cands > 0, axis=1)
        x_new = cands[jnp.argmax(good)]
        ok = jnp.any(good) & jnp.all(jnp.isfinite(x_new))
        x_new = jnp.where(ok, x_new, x)
        return x_new, ~ok | (rel_error(x_new) <= tol), it + 1

    carry = (x0, ~valid | (rel_error(x0) <= tol), jnp.zeros((), jnp.int32))
    x, _, _ = jax.lax.while_loop(lambda cr: ~cr[1] & (cr[2] < num_iters), newton_step, carry)
    w = x / n * jnp.exp(-2.0 * alpha / (alpha + 1.0) * jnp.log(s))
    return jnp.where(valid & jnp.all(jnp.isfinite(w)), w, ones)


def gramian_balancer(weights_fn: Callable[..., jax.Array], *, name: str, rep_grad: bool = True,
                     max_norm: float = 0.0, scale_power: float = 0.0) -> Balancer:
    """A stateless method whose update is ``sum_i w_i g_i`` with ``w = weights_fn(G, losses, key)``.

    Most Jacobian methods only need the ``T x T`` Gramian ``G = J J^T`` (and at
    most the losses and a PRNG key) to find their weights (field notes); this
    builds their :class:`Balancer`. ``max_norm > 0`` clips the combined
    gradient's global norm (as Nash-MTL's and FairGrad's code do).

    ``G`` comes from :func:`scaled_gramian`: when the true Gramian would
    overflow float32, ``weights_fn`` sees ``G / s^2`` and its weights are
    multiplied by ``s^scale_power`` (0 for scale-invariant weights).
    """

    def init(num_tasks: int) -> EmptyState:
        del num_tasks
        return EmptyState()

    def update(losses, task_grads, state, *, key=None):
        gram, s = scaled_gramian(task_grads)
        weights = weights_fn(gram, losses, key)
        if not concrete(scale_power) or scale_power:
            weights = weights * jnp.exp(scale_power * jnp.log(s))
        combined = weighted_sum(task_grads, weights)
        if not concrete(max_norm) or max_norm > 0:
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

    A ``fori_loop`` over the ``n`` pivots (rolled: it compiled 3-7x faster than
    the unrolled form at n = 8-16 and ran no slower). A singular pivot yields
    inf/nan like LAPACK.
    """
    n = a.shape[0]
    vec = b.ndim == 1
    m = jnp.concatenate([a, b[:, None] if vec else b], axis=1)
    rows = jnp.arange(n)

    def pivot(k, m):
        col = jax.lax.dynamic_index_in_dim(m, k, axis=1, keepdims=False)
        p = jnp.argmax(jnp.where(rows >= k, jnp.abs(col), -1.0))
        row_k = jax.lax.dynamic_index_in_dim(m, k, axis=0, keepdims=False)
        row_p = jax.lax.dynamic_index_in_dim(m, p, axis=0, keepdims=False)
        m = jnp.where((rows == p)[:, None], row_k[None, :], m)  # swap rows k and p
        row = row_p / jax.lax.dynamic_index_in_dim(row_p, k, keepdims=False)
        factor = jnp.where(rows == k, 0.0, jax.lax.dynamic_index_in_dim(m, k, axis=1, keepdims=False))
        m = m - factor[:, None] * row[None, :]
        return jnp.where((rows == k)[:, None], row[None, :], m)

    m = jax.lax.fori_loop(0, n, pivot, m)
    x = m[:, n:]
    return x[:, 0] if vec else x


def small_eigh(a: jax.Array, *, sweeps: int = 10, tol: float = 1e-7) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations.

    Returns ``(eigenvalues ascending, eigenvectors as columns)`` like
    ``jnp.linalg.eigh``. Each sweep visits every off-diagonal pair once;
    convergence is quadratic, and the sweeps stop (``lax.while_loop``, at most
    ``sweeps``) once every off-diagonal entry is below ``tol`` times the
    geometric mean of its two diagonal entries, the test under which Jacobi
    computes even the small eigenvalues of a graded matrix (a Gramian of
    gradients whose norms differ by orders of magnitude) to high relative
    accuracy (Demmel and Veselic 1992).
    """
    n = a.shape[0]
    if n == 1:
        return jnp.diagonal(a), jnp.ones((1, 1), a.dtype)
    pairs = jnp.asarray([(p, q) for p in range(n) for q in range(p + 1, n)], jnp.int32)
    eye = jnp.eye(n, dtype=a.dtype)
    off_diag = ~jnp.eye(n, dtype=bool)

    def rotate(carry, pq):
        m, v = carry
        p, q = pq[0], pq[1]
        theta = 0.5 * jnp.arctan2(2.0 * m[p, q], m[q, q] - m[p, p])
        c, s = jnp.cos(theta), jnp.sin(theta)
        r = eye.at[p, p].set(c).at[q, q].set(c).at[p, q].set(s).at[q, p].set(-s)
        return (r.T @ m @ r, v @ r), None

    def converged(m):
        d = jnp.sqrt(jnp.abs(jnp.diagonal(m)))
        return jnp.all(jnp.where(off_diag, jnp.abs(m) <= tol * d[:, None] * d[None, :], True))

    def sweep(carry):
        m, v, _, k = carry
        (m, v), _ = jax.lax.scan(rotate, (m, v), pairs)
        return m, v, converged(m), k + 1

    m, v, _, _ = jax.lax.while_loop(lambda c: ~c[2] & (c[3] < sweeps), sweep, (a, eye, converged(a), 0))
    w = jnp.diagonal(m)
    order = jnp.argsort(w)
    return w[order], v[:, order]
