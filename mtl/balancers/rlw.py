"""Random Loss Weighting (RLW), Lin et al., TMLR 2022.

At every step the task weights are drawn afresh from a fixed distribution and
normalised with a softmax:

    z ~ p(z)  (default: z_i ~ N(0, 1) i.i.d.),
    w = T * softmax(z),

and the network is trained on ``sum_i w_i L_i`` (one backward pass; no per-task
gradients, so ``rep_grad`` is irrelevant and left True). Randomness comes
only from ``key``.

Distributions (``distribution=``):

* ``"normal"`` (default, LibMTL's default): ``z_i ~ N(0, 1)``, then softmax.
* ``"uniform"``: ``z_i ~ U(0, 1)``, then softmax.
* ``"dirichlet"``: ``z ~ Dir(1, ..., 1)``, then softmax (as LibMTL does).
* ``"bernoulli"``: ``w_i ~ Bernoulli(1/2)`` used as they are (no softmax, no
  ``T`` factor), conditioned on not all being zero (rejection sampling with a
  ``lax.while_loop``, like LibMTL's resampling loop).

Deliberate difference from LibMTL: the softmax weights are multiplied by ``T``
so they sum to ``T`` like equal weighting's ``w_i = 1``; LibMTL's sum to 1,
which is the same method with the learning rate divided by ``T``.

Reference: B. Lin, F. Ye, Y. Zhang, I. W. Tsang. "Reasonable Effectiveness of
Random Weighting: A Litmus Test for Multi-Task Learning." TMLR 2022
(arXiv:2111.10603, "A Closer Look at Loss Weighting in Multi-Task Learning").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, EmptyState

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "bernoulli")


def sample_rlw_weights(key: jax.Array, num_tasks: int, distribution: str = "normal") -> jax.Array:
    """Draws one ``(T,)`` vector of RLW task weights from ``key``."""
    t = num_tasks
    if distribution == "normal":
        return t * jax.nn.softmax(jax.random.normal(key, (t,), jnp.float32))
    if distribution == "uniform":
        return t * jax.nn.softmax(jax.random.uniform(key, (t,), jnp.float32))
    if distribution == "dirichlet":
        return t * jax.nn.softmax(jax.random.dirichlet(key, jnp.ones((t,), jnp.float32)))
    if distribution == "bernoulli":
        def draw(k):
            return jax.random.bernoulli(k, 0.5, (t,)).astype(jnp.float32)

        def cond(carry):
            return jnp.sum(carry[1]) == 0

        def body(carry):
            k, _ = carry
            k, sub = jax.random.split(k)
            return k, draw(sub)

        k, sub = jax.random.split(key)
        _, w = jax.lax.while_loop(cond, body, (k, draw(sub)))
        return w
    raise ValueError(f"unknown RLW distribution {distribution!r}; choose one of {DISTRIBUTIONS}")


def rlw(*, distribution: str = "normal") -> Balancer:
    """Random loss weighting.

    Args:
      distribution: one of ``"normal"`` (default), ``"uniform"``,
        ``"dirichlet"``, ``"bernoulli"`` (see the module docstring).

    Returns:
      A :class:`Balancer` with ``grads="none"``; ``update(losses, None, state,
      key=key)`` returns ``(None, weights, state)``; ``key`` is required.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown RLW distribution {distribution!r}; choose one of {DISTRIBUTIONS}")

    def init(num_tasks: int) -> EmptyState:
        del num_tasks
        return EmptyState()

    def update(losses, task_grads, state, *, key):
        del task_grads
        weights = sample_rlw_weights(key, losses.shape[-1], distribution)
        return None, weights, state

    return Balancer(init=init, update=update, grads="none", name="rlw")
