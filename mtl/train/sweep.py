"""Hyperparameter sweeps trained in one program: the seed axis as a replica axis.

A sweep's replicas are its points (values of ``learning_rate``,
``weight_decay`` and float balancer hyperparameters) times its seeds,
replica ``r = p * S + s`` for point ``p`` and seed ``s``. Every leaf of the run
state has the leading replica axis, as with seeds side by side
(:mod:`mtl.train.state`), and the values themselves live in that state as
traced per-replica arrays:

* the optimizer (Adam, AdamW when weight decay is swept or set) carries
  ``learning_rate`` and ``weight_decay`` in its state and is rebuilt from them
  at every update (:func:`carrying_optimizer`; unlike ``optax.inject_hyperparams``,
  whose update rounds differently from plain Adam's, this gives the same update
  as a run alone, bit for bit, from the same gradients);
* the balancer is rebuilt from the values its state carries at every call
  (:func:`carrying`): the factory runs on traced values, so a method whose
  hyperparameter steers Python control flow cannot be swept, and says so
  (:data:`TRACER_ERRORS`, :func:`traced_errors`), rather than silently train
  one value.

Memory grows with the replicas. :func:`replica_bytes` is one replica's share
(argument, output and temporary buffers of one compiled train step of one
replica, from XLA's ``memory_analysis``, plus its best parameters; one extra
compile when a sweep starts);
:func:`memory_limit` the limit, ``sweep_memory_mb`` or, when 0, half the
accelerator's memory (a quarter of host RAM on CPU); :func:`split_points`
cuts the points into groups that fit, each trained as its own program, one
after another.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from mtl.balancers.base import Balancer

PyTree = Any

#: What JAX raises when a traced value is used as a Python value.
TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError,
                 jax.errors.TracerArrayConversionError)

#: Fractions of the device's memory (accelerators) or of host RAM (CPU) a sweep may take when
#: ``sweep_memory_mb`` is 0.
AUTO_FRACTION = {"accelerator": 0.5, "cpu": 0.25}

OPTIMIZER_KEYS = ("learning_rate", "weight_decay")
BALANCER_PREFIX = "balancer.hparams."


class HparamState(NamedTuple):
    """A swept optimizer's or balancer's state: its hyperparameter values and its own state."""

    hparams: dict
    inner: PyTree


def carrying(make: Callable[[dict], Balancer], hparams: dict) -> Balancer:
    """The balancer ``make(hparams)`` whose state carries ``hparams`` (:class:`HparamState`):
    ``update`` and ``after_update`` rebuild the method from the values in the state, so each
    replica of a vmapped step uses its own."""
    b = make(hparams)

    def init(num_tasks, grads_like=None):
        inner = b.init(num_tasks) if grads_like is None else b.init(num_tasks, grads_like=grads_like)
        return HparamState(hparams, inner)

    def update(losses, task_grads, state, *, key=None):
        combined, weights, inner = make(state.hparams).update(losses, task_grads, state.inner, key=key)
        return combined, weights, HparamState(state.hparams, inner)

    def after_update(state, losses_before, losses_after):
        inner = make(state.hparams).after_update(state.inner, losses_before, losses_after)
        return HparamState(state.hparams, inner)

    return b._replace(init=init, update=update, after_update=None if b.after_update is None else after_update)


def carrying_optimizer(make: Callable[[dict], optax.GradientTransformation],
                       hparams: dict) -> optax.GradientTransformation:
    """The optimizer ``make(hparams)`` whose state carries ``hparams`` (:class:`HparamState`);
    ``update`` rebuilds it from the values in the state."""

    def init(params):
        return HparamState(hparams, make(hparams).init(params))

    def update(updates, state, params=None):
        updates, inner = make(state.hparams).update(updates, state.inner, params)
        return updates, HparamState(state.hparams, inner)

    return optax.GradientTransformation(init, update)


def adam_or_adamw(hp: dict, adamw: bool) -> optax.GradientTransformation:
    """What :func:`mtl.config.build_optimizer` builds, from (possibly traced) values."""
    if adamw:
        return optax.adamw(hp["learning_rate"], weight_decay=hp["weight_decay"])
    return optax.adam(hp["learning_rate"])


class Replicas(NamedTuple):
    """A sweep for :func:`mtl.train.fit`: per replica hyperparameter values, and the factory
    of the balancer (``make_balancer(**balancer_hparams)``, run facts bound by ``fit``).

    ``values`` maps ``learning_rate``, ``weight_decay`` and ``balancer.hparams.NAME`` to
    ``(R,)`` arrays (``learning_rate`` and ``weight_decay`` always present); ``adamw``: AdamW
    (else Adam, as :func:`mtl.config.build_optimizer` picks for a weight decay of 0).
    """

    values: dict[str, np.ndarray]
    make_balancer: Callable[..., Balancer]
    adamw: bool

    @property
    def size(self) -> int:
        return len(next(iter(self.values.values())))

    def replica(self, r: int) -> dict[str, float]:
        """Replica ``r``'s values (Python floats)."""
        return {k: float(v[r]) for k, v in self.values.items()}

    def optimizer(self, hp: dict) -> optax.GradientTransformation:
        """Adam/AdamW with ``hp``'s learning rate and weight decay carried in its state."""
        own = {k: hp[k] for k in OPTIMIZER_KEYS}
        return carrying_optimizer(lambda h: adam_or_adamw(h, self.adamw), own)

    def balancer(self, hp: dict, bind: Callable[[Balancer], Balancer] = lambda b: b) -> Balancer:
        """The balancer with ``hp``'s values carried in its state (:func:`carrying`);
        ``bind`` adds the run facts."""
        own = {k[len(BALANCER_PREFIX):]: v for k, v in hp.items() if k.startswith(BALANCER_PREFIX)}
        return carrying(lambda h: bind(self.make_balancer(**h)), own)

    def balancer_keys(self) -> list[str]:
        return [k for k in self.values if k.startswith(BALANCER_PREFIX)]


@contextlib.contextmanager
def traced_errors(balancer_name: str, keys: Sequence[str]):
    """Turns a tracer conversion inside the block (a swept balancer hyperparameter used as a
    Python value) into a one-line ``ValueError`` naming the balancer and the swept keys."""
    try:
        yield
    except TRACER_ERRORS as e:
        raise ValueError(f"sweep: balancer {balancer_name!r} cannot take {', '.join(keys) or 'its hyperparameters'} "
                         "as per-replica traced values (it branches on them in Python or converts them to numbers: "
                         f"{str(e).splitlines()[0]}); train one run per value instead") from None


def replica_bytes(step_fn: Callable, train_like: PyTree, batch_like: dict, params_like: PyTree) -> int:
    """Bytes one replica takes: one compiled train step of one replica (its arguments,
    outputs and temporaries, from XLA's ``memory_analysis``) plus its best parameters."""
    best = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(params_like))
    stats = jax.jit(step_fn).lower(train_like, batch_like).compile().memory_analysis()
    if stats is None:  # a backend without the analysis: twice the state (in and out) and the batch
        state = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves((train_like, batch_like)))
        return 2 * state + best
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes) + best


def memory_limit(sweep_memory_mb: float, device=None) -> int:
    """The bytes a sweep's program may take: ``sweep_memory_mb``, or when 0 the
    :data:`AUTO_FRACTION` of the device's memory (of host RAM on CPU)."""
    if sweep_memory_mb:
        return int(sweep_memory_mb * 2**20)
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if stats.get("bytes_limit"):
            return int(AUTO_FRACTION["accelerator"] * stats["bytes_limit"])
    return int(AUTO_FRACTION["cpu"] * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def split_points(num_points: int, seeds_per_point: int, per_replica: int, limit: int) -> list[range]:
    """The points cut into consecutive groups whose replicas (``seeds_per_point`` each, of
    ``per_replica`` bytes) fit in ``limit`` bytes; a point that alone does not fit is a group
    of its own (and may run out of memory)."""
    per_group = max(1, int(limit // max(per_replica * seeds_per_point, 1)))
    return [range(a, min(a + per_group, num_points)) for a in range(0, num_points, per_group)]


def replica_values(points: Sequence[dict[str, float]], config_values: dict[str, float],
                   seeds_per_point: int) -> dict[str, np.ndarray]:
    """``{path: (R,) float32}`` over the replicas (each point repeated for its seeds); the
    optimizer keys a point does not set take ``config_values``."""
    keys = list(OPTIMIZER_KEYS) + [k for k in points[0] if k not in OPTIMIZER_KEYS]
    rows = [{**config_values, **p} for p in points for _ in range(seeds_per_point)]
    return {k: np.asarray([row[k] for row in rows], np.float32) for k in keys}
