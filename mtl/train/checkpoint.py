"""Orbax checkpoints of a run's whole state.

A checkpoint is the run state pytree (:class:`mtl.train.state.RunState`:
parameters, optimizer and balancer state, PRNG keys, best parameters and
score, early-stopping counters, position in the run) plus a JSON document with
what the host keeps (epoch records, the running sums of a partial epoch, wall
times). Orbax writes each checkpoint into a temporary folder and renames it
when complete, so a crash during a write leaves the previous checkpoint
usable; ``max_to_keep`` bounds how many are kept.

PRNG key arrays are stored as their raw ``uint32`` data and re-wrapped on restore.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import jax
import numpy as np

PyTree = Any


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def keys_to_data(tree: PyTree) -> PyTree:
    """Typed PRNG key leaves -> their ``uint32`` data (what orbax can store)."""
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def data_to_keys(tree: PyTree, like: PyTree) -> PyTree:
    """Inverse of :func:`keys_to_data`, with ``like`` saying which leaves were keys."""
    return jax.tree_util.tree_map(lambda x, l: jax.random.wrap_key_data(x, impl=jax.random.key_impl(l))
                                  if _is_key(l) else x, tree, like)


class Checkpointer:
    """Saves and restores ``(state pytree, meta dict)`` under ``directory/<step>/``."""

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
        self._ocp = ocp
        self.directory = pathlib.Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max(1, int(max_to_keep)), create=True,
                                                 enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step (incomplete writes are ignored)."""
        return self._manager.latest_step()

    def save(self, step: int, state: PyTree, meta: dict) -> None:
        ocp = self._ocp
        if step in self._manager.all_steps():  # rewritten after an interrupted epoch: replace it
            self._manager.delete(step)
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(keys_to_data(state)),
                                                         meta=ocp.args.JsonSave(meta)))
        self._manager.wait_until_finished()

    def restore(self, step: int, like: PyTree) -> tuple[PyTree, dict]:
        """The state saved at ``step``, shaped and typed like ``like``, and its meta."""
        ocp = self._ocp
        target = jax.tree_util.tree_map(_abstract, keys_to_data(like))
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                  meta=ocp.args.JsonRestore()))
        return data_to_keys(out.state, like), dict(out.meta)

    def close(self) -> None:
        self._manager.close()


def _abstract(x):
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.zeros(np.shape(x), np.asarray(x).dtype)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))
