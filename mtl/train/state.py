"""The whole state of a run: one pytree on the device and host, one JSON dict on the host.

:class:`RunState` holds everything the computation depends on; the ``meta``
dict (:func:`new_meta`) what the host records (epoch records, running sums of
a partial epoch, wall times). Both are saved in a checkpoint
(:mod:`mtl.train.checkpoint`), so a run resumes bit for bit.

**Seeds side by side**: with a list of seeds every leaf gets a leading seed
axis and the functions over it are ``jax.vmap``-ed (:func:`over_seeds`); one
seed has no seed axis. :func:`seed_index` indexes either layout. A sweep's
replicas (:mod:`mtl.train.sweep`) are this axis too: one entry per (point, seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl.balancers.base import Balancer
from mtl.models.base import Model
from mtl.train.step import TrainState, init_train_state

PyTree = Any
FORMAT_VERSION = 1


class RunState(NamedTuple):
    """The whole state of a run (a leading seed axis on every leaf when seeds are vectorised).

    Device arrays: ``train`` (:class:`~mtl.train.step.TrainState`), ``best_params``,
    ``data_key`` (fixes the data order: epoch ``e`` is a permutation drawn from
    ``fold_in(data_key, e)``). Host (numpy) arrays: ``best_score`` (float64,
    higher is better), ``best_epoch``, ``bad_epochs`` (epochs since the last
    improvement), ``stopped`` (early-stopped), ``skipped`` (non-finite steps
    dropped), ``epoch`` (epochs finished) and ``chunk`` (compiled calls
    finished in the current epoch).
    """

    train: TrainState
    best_params: PyTree
    data_key: jax.Array
    best_score: np.ndarray
    best_epoch: np.ndarray
    bad_epochs: np.ndarray
    stopped: np.ndarray
    skipped: np.ndarray
    epoch: np.ndarray
    chunk: np.ndarray


def over_seeds(fn: Callable, in_axes, seeds: Sequence[int] | None) -> Callable:
    """``fn`` vmapped over the seed axis (``in_axes``) when seeds are vectorised."""
    return fn if seeds is None else jax.vmap(fn, in_axes=in_axes)


def seed_index(i: int, seeds: Sequence[int] | None) -> int | tuple:
    """Index of seed ``i`` in an array with a seed axis (``()``: the whole array of one seed)."""
    return () if seeds is None else i


def init_run_state(model: Model, balancer: Balancer, optimizer: optax.GradientTransformation,
                   seed: int | Sequence[int], sharding, grads_like: PyTree | None = None,
                   replicas: Callable[[dict], tuple[Balancer, optax.GradientTransformation]] | None = None,
                   values: dict[str, np.ndarray] | None = None) -> RunState:
    """The state before the first epoch: ``jax.random.key(seed)`` splits into the
    training key (parameters, dropout, balancer) and the data-order key.

    A sweep (:mod:`mtl.train.sweep`): ``replicas(hp) -> (balancer, optimizer)`` builds
    each replica's from its values ``hp`` (one entry of each ``values`` array, traced),
    which then live in the optimizer and balancer states; ``seed`` lists each replica's seed.
    """
    seeds = None if isinstance(seed, (int, np.integer)) else list(seed)

    def init_device(s, hp=None):
        k_state, k_data = jax.random.split(jax.random.key(s))
        b, opt = (balancer, optimizer) if hp is None else replicas(hp)
        train = init_train_state(model, b, opt, k_state, grads_like=grads_like)
        return train, train.params, k_data

    if seeds is None:
        train0, best0, dkey0 = jax.jit(init_device, static_argnums=0, out_shardings=sharding)(int(seed))
    elif replicas is None:
        train0, best0, dkey0 = jax.jit(jax.vmap(init_device), out_shardings=sharding)(jnp.asarray(seeds))
    else:
        hp = {k: jnp.asarray(v) for k, v in values.items()}
        train0, best0, dkey0 = jax.jit(jax.vmap(init_device), out_shardings=sharding)(jnp.asarray(seeds), hp)

    def host(x, dtype):
        return np.full(() if seeds is None else (len(seeds),), x, dtype)

    return RunState(train0, best0, dkey0, host(-np.inf, np.float64), host(-1, np.int64), host(0, np.int64),
                    host(False, bool), host(0, np.int64), np.array(0, np.int64), np.array(0, np.int64))


def new_meta(num_seeds: int) -> dict[str, Any]:
    """The host's records before the first epoch (JSON; saved with every checkpoint)."""
    return {"version": FORMAT_VERSION, "history": [[] for _ in range(num_seeds)], "best_eval": [None] * num_seeds,
            "sums": None, "train_seconds": 0.0, "step_times": [], "global_step": 0, "stop_reason": [""] * num_seeds}
