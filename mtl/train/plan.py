"""The epoch plan: which training rows each step of each compiled call sees.

An epoch is ``steps = n // batch_size`` steps (the final partial batch is
dropped), run ``chunk = min(steps_per_call, steps)`` at a time inside one
compiled call; the last call is padded with skipped steps to a full chunk, so
the run compiles once (:class:`EpochPlan`).

The data order of epoch ``e`` is a permutation of the training rows drawn on
the device from ``fold_in(data_key, e)`` (:func:`epoch_order`). A balancer
that draws ``K > 1`` batches per step gets the epoch order's batch first and
``K - 1`` batches drawn at random from the training split, from a key of the
epoch and call (:func:`chunk_rows`). Both are derived from the run state, so a
resumed run sees the same batches.

When the training split is larger than the device memory budget it stays on
the host: :class:`TrainFeed` gathers each call's rows there and sends them to
the device while the previous call computes (same batches, same results).
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mtl.train import devices as dev
from mtl.train.state import over_seeds

PyTree = Any


class EpochPlan(NamedTuple):
    """Sizes of an epoch: ``n`` training rows, ``steps`` of ``batch_size`` rows, in
    ``n_chunks`` calls of ``chunk`` steps, each step drawing ``k_batches`` batches."""

    n: int
    batch_size: int
    steps: int
    chunk: int
    n_chunks: int
    k_batches: int = 1

    @classmethod
    def make(cls, n: int, batch_size: int, steps_per_call: int, k_batches: int = 1) -> EpochPlan:
        """``batch_size`` is capped at ``n``."""
        batch_size = min(batch_size, n)
        steps = n // batch_size
        chunk = max(1, min(steps_per_call, steps))
        return cls(n, batch_size, steps, chunk, math.ceil(steps / chunk), k_batches)

    @property
    def valid(self) -> np.ndarray:
        """``(n_chunks, chunk)`` bool: False for the padding steps of the last call."""
        return (np.arange(self.n_chunks * self.chunk) < self.steps).reshape(self.n_chunks, self.chunk)


def epoch_order(plan: EpochPlan, data_key: jax.Array, epoch) -> jax.Array:
    """``(n_chunks, chunk, batch_size)`` row indices of an epoch (padding steps: row 0)."""
    perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), plan.n)[: plan.steps * plan.batch_size]
    perm = perm.reshape(plan.steps, plan.batch_size)
    pad = plan.n_chunks * plan.chunk - plan.steps
    perm = jnp.concatenate([perm, jnp.zeros((pad, plan.batch_size), perm.dtype)])
    return perm.reshape(plan.n_chunks, plan.chunk, plan.batch_size)


def chunk_rows(plan: EpochPlan, idx: jax.Array, data_key: jax.Array, epoch, c) -> jax.Array:
    """Rows of every step of call ``c``: ``(chunk, K, B)``, the epoch order's batch
    ``idx[step]`` first, then the K - 1 extra batches of multi-batch balancers."""
    key = jax.random.fold_in(data_key, 10_000 + epoch * plan.n_chunks + c)
    if plan.k_batches == 1:
        return idx[:, None, :]
    keys = jax.random.split(key, plan.chunk)
    extra = jax.vmap(lambda k: jax.random.randint(k, (plan.k_batches - 1, plan.batch_size), 0, plan.n))(keys)
    return jnp.concatenate([idx[:, None, :], extra.astype(idx.dtype)], axis=1)


def gather_rows(train: dict[str, np.ndarray], rows: np.ndarray, vectorised: bool) -> tuple[dict, np.ndarray]:
    """A call's rows of the host split ``train`` gathered: the block ``{name: (rows, ...)}``
    (one per seed when ``vectorised``) and the positions in it of every step, shaped like ``rows``."""
    rows = np.asarray(rows)  # (chunk, K, B) or (S, chunk, K, B)
    flat = rows.reshape(rows.shape[0], -1) if vectorised else rows.reshape(-1)
    block = {k: v[flat] for k, v in train.items()}
    positions = np.arange(flat.shape[-1]).reshape(rows.shape[-3:])
    if vectorised:
        positions = np.broadcast_to(positions, rows.shape)
    return block, positions


class TrainFeed:
    """The training rows of each compiled call: ``(block, positions)``, where step
    ``j`` of the call reads rows ``block[positions[j]]`` (``positions[j, 0]`` alone
    when ``k_batches`` is 1). The block is the whole training split on the device,
    or, streamed, the call's rows gathered on the host (prefetched one call ahead)."""

    def __init__(self, plan: EpochPlan, train: dict[str, np.ndarray], mesh: Mesh, seeds: Sequence[int] | None,
                 memory_budget: int | None):
        self.plan, self.train, self.mesh, self.seeds = plan, train, mesh, seeds
        repl = dev.replicated(mesh)
        self.streaming = memory_budget is not None and sum(a.nbytes for a in train.values()) > memory_budget
        self.device = None if self.streaming else dev.put_replicated(train, mesh)
        self._order = jax.jit(over_seeds(lambda k, e: epoch_order(plan, k, e), (0, None), seeds), out_shardings=repl)
        self._rows = jax.jit(over_seeds(lambda i, k, e, c: chunk_rows(plan, i, k, e, c), (0, 0, None, None), seeds),
                             out_shardings=repl)
        self._prefetch = concurrent.futures.ThreadPoolExecutor(1) if self.streaming else None

    def calls(self, data_key: jax.Array, epoch: int, start: int = 0) -> Iterator[tuple[int, PyTree, Any]]:
        """``(c, block, positions)`` of the calls ``start, ..., n_chunks - 1`` of ``epoch``."""
        order = self._order(data_key, epoch)

        def rows(c):
            return self._rows(order[c] if self.seeds is None else order[:, c], data_key, epoch, c)

        if not self.streaming:
            for c in range(start, self.plan.n_chunks):
                yield c, self.device, rows(c)
            return
        pending = None
        for c in range(start, self.plan.n_chunks):
            if pending is None:
                pending = self._prefetch.submit(self._to_device, rows(c))
            block, positions = pending.result()
            last = c + 1 == self.plan.n_chunks
            pending = None if last else self._prefetch.submit(self._to_device, rows(c + 1))
            yield c, block, positions

    def _to_device(self, rows):
        block, positions = gather_rows(self.train, rows, self.seeds is not None)
        return dev.put_replicated(block, self.mesh), positions

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.shutdown(wait=False, cancel_futures=True)
