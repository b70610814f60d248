"""FairGrad: alpha-fair resource allocation among tasks (Ban & Ji, ICML 2024).

Each task's "utility" of the update ``d`` is its loss decrease rate
``u_i = g_i^T d``; FairGrad picks ``d`` maximising the alpha-fair welfare
``sum_i u_i^(1 - alpha) / (1 - alpha)`` (``sum_i log u_i`` for ``alpha = 1``)
over a ball. Writing ``d = sum_i w_i g_i`` = ``J^T w``, the optimality condition is

    (G w)_i = w_i^(-1/alpha),    w_i > 0,    G = J J^T.

``alpha = 1`` is proportional fairness (the Nash-MTL condition), ``alpha -> inf``
max-min fairness, ``alpha = 0`` the plain sum (linear scalarisation).

The official code solves the condition with ``scipy.optimize.least_squares``
from ``w = 1/T`` on the host. Here it is solved inside jit, to convergence, by
:func:`mtl.balancers.base.alpha_fair_weights`: Newton's method on the strictly
convex ``0.5 w^T G w - sum_i phi(w_i)`` with ``phi'(w) = w^(-1/alpha)``, whose
stationary point is exactly the condition, in norm-scaled variables (well
conditioned however far apart the gradient norms are), until every equation
holds to a relative 1e-6 (at most ``num_iters`` steps). Against an exact
float64 solution (tests/balancers/test_exact_solutions.py) the update's direction
agrees to cosine >= 0.9999 with gradient norms spanning four decades, T up to
8, alpha in {0.5, 1, 2}. As in the official ``FairGrad`` weight method the
shared update is

    d = clip(T * sum_i w_i g_i, max_norm)

(``T *`` "to match the sum loss", then ``clip_grad_norm_`` with ``max_norm = 1``);
``max_norm <= 0`` disables the clipping. The returned weights are ``T w``, so
that ``d`` before clipping is ``sum_i weights_i g_i``.

Not defined on representation gradients (``rep_grad=False``, as in LibMTL).

Deliberate differences: Newton's method instead of ``least_squares`` (same
solution when it exists); a tiny ridge ``1e-8`` on the diagonal of the cosine
matrix keeps ``w`` finite when some non-negative combination of the gradients
vanishes. LibMTL's FairGrad
uses neither the ``T *`` factor nor the clipping (``max_norm=0`` and dividing
the weights by ``T`` reproduce it).

Reference: H. Ban, K. Ji. "Fair Resource Allocation in Multi-Task Learning."
ICML 2024. Official code: github.com/OptMN-Lab/fairgrad.
"""

from __future__ import annotations

from mtl.balancers.base import Balancer, alpha_fair_weights, concrete, gramian_balancer


def fairgrad_weights(gram, *, alpha: float = 1.0, num_iters: int = 25):
    """``w > 0`` with ``(G w)_i = w_i^(-1/alpha)`` for Gramian ``gram``."""
    return alpha_fair_weights(gram, alpha=alpha, num_iters=num_iters)


def fairgrad(*, alpha: float = 1.0, max_norm: float = 1.0, num_iters: int = 25) -> Balancer:
    """FairGrad.

    Args:
      alpha: fairness parameter (> 0; 1 = proportional fairness, larger = fairer
        towards the slowest task). The official default is 1.0.
      max_norm: clip the combined gradient to this global norm (``<= 0``: no clipping).
      num_iters: cap on the Newton steps of the solver (it stops at convergence).

    Returns:
      A :class:`Balancer`; ``update`` returns ``clip(T sum_i w_i g_i, max_norm)``
      and the weights ``T w``.
    """
    if concrete(alpha) and alpha <= 0:
        raise ValueError("fairgrad alpha must be > 0")

    return gramian_balancer(
        lambda gram, losses, key: gram.shape[0] * fairgrad_weights(gram, alpha=alpha, num_iters=num_iters),
        name="fairgrad", rep_grad=False, max_norm=max_norm, scale_power=-2.0 * alpha / (alpha + 1.0))
