"""Smooth Tchebycheff scalarisation (STCH), Lin et al., ICML 2024.

The smooth Tchebycheff scalarisation of objectives ``f_i`` with preference
``lambda`` and ideal point ``z*`` is

    g_mu(x) = mu * log sum_i exp(lambda_i (f_i(x) - z*_i) / mu),

a smooth upper bound of ``max_i lambda_i (f_i - z*_i)`` that tends to it as
``mu -> 0``. For multi-task learning, following the official code (Xi-L/STCH,
``STCH_MTL``) and LibMTL, the objectives are the log losses normalised by a
nadir vector ``n`` and the ideal point is 0:

    f_i = log(L_i / n_i + 1e-20),      L_STCH = T * mu * log sum_i exp(lambda_i f_i / mu),

where ``n`` is the mean of the training losses over the warm-up epoch. Its
gradient is again a weighted sum of the task gradients, so STCH is applied as
a loss-weighting method (``combined = None``) with

    w_i = T * lambda_i * softmax(lambda * f / mu)_i / (L_i + 1e-20 n_i).

Schedule (identical to the official code and LibMTL, with ``e`` the epoch
counted from 0 and ``E = warmup_epochs``):

* ``e < E``: warm-up on the sum of log losses, ``w_i = 1 / (L_i + 1e-20)``;
* ``e == E``: the same, while accumulating the losses of this epoch; their mean
  becomes the nadir vector ``n``;
* ``e > E``: smooth Tchebycheff weights above.

So the log-loss warm-up lasts ``E + 1`` epochs. ``E = 0`` still spends epoch 0
collecting the nadir vector. The state counts ``update`` calls itself; the
epoch is ``step // steps_per_epoch``. ``steps_per_epoch`` is a run fact
(``Balancer.run_facts``), filled in by the training loop (``mtl.train.fit``
and the command line call :func:`mtl.balancers.with_run_facts`) unless given
explicitly; left ``None`` (stand-alone use), an epoch is
``DEFAULT_STEPS_PER_EPOCH = 100`` update calls and ``update`` warns when it is
traced.

``lambda`` defaults to all ones (the official code has no preference vector);
``preference`` sets it. ``rep_grad`` is irrelevant (no per-task gradients) and
left True. Losses must be positive; the nadir vector is clamped below at
1e-20 so that ``L / n`` stays finite.

Defaults ``mu = 1.0`` and ``warmup_epochs = 4`` are LibMTL's
(``--STCH_mu``, ``--STCH_warmup_epoch``).

Reference: X. Lin, X. Zhang, Z. Yang, F. Liu, Z. Wang, Q. Zhang. "Smooth
Tchebycheff Scalarization for Multi-Objective Optimization." ICML 2024.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtl.balancers.base import Balancer, concrete, declare_run_facts

#: Epoch length used when ``steps_per_epoch`` is left ``None`` (stand-alone use; with a warning).
DEFAULT_STEPS_PER_EPOCH = 100

_EPS = 1e-20


class STCHState(NamedTuple):
    step: jax.Array  # () int32: number of update calls so far
    loss_sum: jax.Array  # (T,) sum of the warm-up epoch's losses (the nadir accumulator)
    loss_count: jax.Array  # () float32: steps summed in loss_sum


def stch(
    *,
    mu: float = 1.0,
    warmup_epochs: int = 4,
    steps_per_epoch: int | None = None,
    preference: tuple[float, ...] | None = None,
) -> Balancer:
    """Smooth Tchebycheff scalarisation as loss weights.

    Args:
      mu: smoothing parameter (> 0); smaller is closer to the plain
        Tchebycheff ``max``.
      warmup_epochs: ``E``: epochs of log-loss warm-up before the nadir epoch.
      steps_per_epoch: number of ``update`` calls per epoch. A run fact:
        ``None`` (default) lets the training loop fill it in
        (:func:`with_run_facts`); used stand-alone with ``None``, an epoch is
        ``DEFAULT_STEPS_PER_EPOCH`` calls and ``update`` warns.
      preference: optional positive preference vector ``lambda`` of length T
        (default all ones).

    Returns:
      A :class:`Balancer` with ``grads="none"``; ``update`` returns
      ``(None, weights, state)``.
    """
    if concrete(mu) and mu <= 0:
        raise ValueError(f"mu must be > 0, got {mu}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    pref = None if preference is None else tuple(float(p) for p in preference)
    if pref is not None and any(p <= 0 for p in pref):
        raise ValueError(f"preference must be positive, got {pref}")
    hparams = dict(mu=mu, warmup_epochs=warmup_epochs, steps_per_epoch=steps_per_epoch, preference=pref)
    epoch_len = DEFAULT_STEPS_PER_EPOCH if steps_per_epoch is None else steps_per_epoch

    def init(num_tasks: int) -> STCHState:
        if pref is not None and len(pref) != num_tasks:
            raise ValueError(f"preference has {len(pref)} entries for {num_tasks} tasks")
        return STCHState(jnp.array(0, jnp.int32), jnp.zeros((num_tasks,), jnp.float32), jnp.array(0.0, jnp.float32))

    def update(losses, task_grads, state, *, key=None):
        del task_grads, key
        if steps_per_epoch is None:
            warnings.warn(f"stch: steps_per_epoch is not set; an epoch is taken as {DEFAULT_STEPS_PER_EPOCH} update "
                          "calls. Pass steps_per_epoch=, or let the training loop fill it in "
                          "(mtl.balancers.with_run_facts).", stacklevel=2)
        losses = jax.lax.stop_gradient(losses).astype(jnp.float32)
        t = losses.shape[-1]
        lam = jnp.ones((t,), jnp.float32) if pref is None else jnp.asarray(pref, jnp.float32)
        if lam.shape != (t,):
            raise ValueError(f"preference has {lam.shape[0]} entries for {t} tasks")
        epoch = state.step // epoch_len

        log_weights = 1.0 / (losses + _EPS)

        nadir = jnp.maximum(state.loss_sum / jnp.maximum(state.loss_count, 1.0), _EPS)
        f = jnp.log(losses / nadir + _EPS)
        stch_weights = t * lam * jax.nn.softmax(lam * f / mu) / (losses + _EPS * nadir)

        weights = jnp.where(epoch > warmup_epochs, stch_weights, log_weights)
        collecting = epoch == warmup_epochs
        new_state = STCHState(
            state.step + 1,
            jnp.where(collecting, state.loss_sum + losses, state.loss_sum),
            jnp.where(collecting, state.loss_count + 1.0, state.loss_count),
        )
        return None, weights, new_state

    return declare_run_facts(Balancer(init=init, update=update, grads="none", name="stch"), stch, hparams,
                             ("steps_per_epoch",))
