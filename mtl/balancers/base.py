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
from jax.flatten_util import ravel_pytree

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
      name: the registry name.
    """

    init: Callable[[int], PyTree]
    update: Callable[..., tuple]
    grads: str = "none"
    rep_grad: bool = True
    num_batches: int = 1
    after_update: Optional[Callable[..., PyTree]] = None
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


def flatten_task_grads(task_grads: PyTree) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """Flattens a pytree with leading task axis into a Jacobian ``(T, D)``.

    Returns the Jacobian and ``unravel``, which maps one ``(D,)`` vector back to
    the pytree of one task's gradient.
    """
    leaves = jax.tree_util.tree_leaves(task_grads)
    num_tasks = leaves[0].shape[0]
    first = jax.tree_util.tree_map(lambda g: g[0], task_grads)
    _, unravel = ravel_pytree(first)
    jac = jnp.concatenate([g.reshape(num_tasks, -1) for g in leaves], axis=1)
    return jac, unravel


def weighted_sum(task_grads: PyTree, weights: jax.Array) -> PyTree:
    """``sum_i weights[i] * task_grads[i]`` leaf by leaf (no flattening)."""
    return jax.tree_util.tree_map(
        lambda g: jnp.tensordot(weights.astype(g.dtype), g, axes=1), task_grads
    )


def gramian(task_grads: PyTree) -> jax.Array:
    """The ``(T, T)`` Gramian ``J J^T`` of the task gradients, leaf by leaf."""
    def leaf_gram(g):
        m = g.reshape(g.shape[0], -1)
        return m @ m.T

    return sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf_gram, task_grads)))


def num_tasks_of(task_grads: PyTree) -> int:
    return jax.tree_util.tree_leaves(task_grads)[0].shape[0]


def safe_norm(x: jax.Array, axis=-1, keepdims=False, eps: float = 1e-12) -> jax.Array:
    """Euclidean norm whose gradient and value stay finite at zero."""
    sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
    safe = jnp.where(sq > eps * eps, sq, 1.0)
    return jnp.where(sq > eps * eps, jnp.sqrt(safe), 0.0)


def min_norm_weights(gram: jax.Array, *, num_iters: int = 50) -> jax.Array:
    """Frank-Wolfe for ``min_{w in simplex} w^T G w`` (Sener & Koltun 2018, Alg. 2).

    Runs a fixed number of iterations inside jit with the exact line search of
    the paper's two-point solver at each step. Returns weights on the simplex.
    """
    t = gram.shape[0]
    w0 = jnp.full((t,), 1.0 / t, gram.dtype)

    def body(_, w):
        gw = gram @ w
        idx = jnp.argmin(gw)
        e = jax.nn.one_hot(idx, t, dtype=gram.dtype)
        # line search on segment w -> e: minimise |(1-g) v1 + g v2|^2 with
        # v1 = J^T w, v2 = J^T e.
        v1v1 = w @ gw
        v1v2 = gw[idx]
        v2v2 = gram[idx, idx]
        denom = v1v1 - 2.0 * v1v2 + v2v2
        gamma = jnp.where(denom > 1e-20, (v1v1 - v1v2) / jnp.where(denom > 1e-20, denom, 1.0), 0.0)
        gamma = jnp.clip(gamma, 0.0, 1.0)
        return (1.0 - gamma) * w + gamma * e

    return jax.lax.fori_loop(0, num_iters, body, w0)
