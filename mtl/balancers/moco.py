"""MoCo: multi-objective gradient correction (Fernando et al., ICLR 2023).

Stochastic MGDA is biased: the min-norm weights computed from one batch's
gradients are correlated with those gradients. MoCo tracks the task gradients
with a moving average ``Y`` (rows ``y_i``) and takes one projected-gradient step
on the MGDA subproblem per iteration (Algorithm 1):

    h_i = L_i g_i / (|g_i| + 1e-8)                        (normalised as in LibMTL)
    y_i <- y_i - beta_k (y_i - h_i),                      beta_k  = beta  / k^beta_sigma
    lam <- Pi_simplex(lam - gamma_k (Y Y^T + rho I) lam),  gamma_k = gamma / k^gamma_sigma
    d   = Y^T lam = sum_i lam_i y_i

``Y`` has the shape of the task gradients, which ``init(num_tasks)`` does not
know. Two modes:

* ``init(num_tasks, grads_like=tree)`` (the method as published): ``tree`` is a
  pytree shaped like ONE task's gradient (arrays or ``jax.ShapeDtypeStruct``);
  the state holds ``Y`` with leaves ``(T, *leaf.shape)``. The train step must pass it.
* ``init(num_tasks)`` (fallback; what the contract test exercises): Gramian-space
  tracking. The state holds a ``T x T`` matrix ``M``, the same moving average
  applied to the Gramians, ``M <- M - beta_k (M - H H^T)``, used in place of
  ``Y Y^T`` in the ``lam`` step; the update is ``d = H^T lam`` with the *current*
  normalised gradients. This keeps MoCo's slowly moving weights but NOT its bias
  correction: ``M`` tends to ``E[H H^T] = E[H] E[H]^T + Cov[H]``, while ``Y Y^T``
  tends to ``E[H] E[H]^T`` (removing that covariance term needs inner products
  between gradients of different steps, i.e. a ``D``-sized state). Pass
  ``grads_like`` to get the method as published.

Defaults are LibMTL's (``beta = 0.5``, ``beta_sigma = 0.5``, ``gamma = 0.1``,
``gamma_sigma = 0.5``, ``rho = 0``); ``lam`` starts uniform and ``Y`` at zero.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL).

Deliberate difference: the ``lam`` step is the paper's projection onto the
simplex (``lambda_update="projection"``). LibMTL's MoCo (from code shared by
the authors) uses ``softmax(lam - step)`` instead, which keeps the weights close
to uniform; ``lambda_update="softmax"`` reproduces it. The paper's projection
of ``y_i`` onto a bounded set is omitted (as in every public implementation).

Reference: H. D. Fernando, H. Shen, M. Liu, S. Chaudhury, K. Murugesan,
T. Chen. "Mitigating Gradient Bias in Multi-objective Learning: A Provably
Convergent Approach." ICLR 2023.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, gramian, project_simplex, scaled_gramian, weighted_sum

LAMBDA_UPDATES = ("projection", "softmax")


class MoCoState(NamedTuple):
    step: jax.Array  # () int32, updates so far
    lambd: jax.Array  # (T,) task weights on the simplex
    y: Any  # pytree of (T, ...) tracked gradients, or None (fallback)
    gram_y: jax.Array  # (T, T) tracked Gramian Y Y^T (fallback only)


def moco(*, beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1, gamma_sigma: float = 0.5,
         rho: float = 0.0, lambda_update: str = "projection") -> Balancer:
    """MoCo.

    Args:
      beta, beta_sigma: tracking step ``beta_k = beta / k^beta_sigma``.
      gamma, gamma_sigma: weight step ``gamma_k = gamma / k^gamma_sigma``.
      rho: l2 regularisation of the weight subproblem.
      lambda_update: ``"projection"`` (paper) or ``"softmax"`` (LibMTL).

    Returns:
      A :class:`Balancer` whose ``init(num_tasks, grads_like=None)`` takes the
      optional gradient template described in the module docstring.
    """
    if lambda_update not in LAMBDA_UPDATES:
        raise ValueError(f"lambda_update must be one of {LAMBDA_UPDATES}, got {lambda_update!r}")

    def init(num_tasks: int, grads_like: Any | None = None) -> MoCoState:
        y = None
        if grads_like is not None:
            y = jax.tree_util.tree_map(lambda x: jnp.zeros((num_tasks, *x.shape), x.dtype), grads_like)
        return MoCoState(jnp.zeros((), jnp.int32), jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
                         y, jnp.zeros((num_tasks, num_tasks), jnp.float32))

    def lambda_step(lambd, gram_y, gamma_k):
        t = lambd.shape[0]
        z = lambd - gamma_k * (gram_y + rho * jnp.eye(t, dtype=lambd.dtype)) @ lambd
        if lambda_update == "softmax":
            return jax.nn.softmax(z)
        return project_simplex(z)

    def update(losses, task_grads, state, *, key=None):
        del key
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        step = state.step + 1
        k = step.astype(jnp.float32)
        beta_k = beta / k**beta_sigma
        gamma_k = gamma / k**gamma_sigma
        gram, s = scaled_gramian(task_grads)  # the true Gramian is s^2 gram
        norms = s * jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))
        scale = losses / (norms + 1e-8)  # h_i = scale_i g_i
        if state.y is not None:
            y = jax.tree_util.tree_map(
                lambda yy, g: (yy - beta_k * (yy - g * scale.reshape((-1,) + (1,) * (g.ndim - 1))))
                .astype(yy.dtype),
                state.y, task_grads)
            gram_y = gramian(y).astype(jnp.float32)
            lambd = lambda_step(state.lambd, gram_y, gamma_k)
            return weighted_sum(y, lambd), lambd, MoCoState(step, lambd, y, state.gram_y)
        gram_h = (s * scale)[:, None] * gram * (s * scale)[None, :]
        gram_y = state.gram_y - beta_k * (state.gram_y - gram_h)
        lambd = lambda_step(state.lambd, gram_y, gamma_k)
        return weighted_sum(task_grads, lambd * scale), lambd, MoCoState(step, lambd, None, gram_y)

    return Balancer(init=init, update=update, grads="shared", rep_grad=False, init_takes_grads_like=True, name="moco")
