"""Data parallelism over a device mesh with exact balancing.

A one-axis mesh (``"data"``) over the devices; training batches are sharded
over it, everything else (parameters, optimizer and balancer state, the
training split) is replicated. The step is one ``jax.jit`` program over global
arrays, so XLA inserts the all-reduce of every per-task gradient *before* the
balancer sees it: each method computes exactly what it computes on one device
(up to the order of floating-point sums), with no change to model or balancer
code.

Several processes (:mod:`mtl.train.distributed`, ``--config.distributed=True``):
``jax.devices()`` then spans every process, each process holds the same host
arrays and builds its own devices' shards of the global arrays from them
(:func:`put_replicated`), and the same code runs (tested with two processes on
one host).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A ``("data",)`` mesh over the first ``num_devices`` devices (all when ``None`` or 0)."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"num_devices={num_devices} but only {len(devices)} device(s) are available "
                             f"({devices[0].platform})")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """A global batch must split evenly over the devices; says which sizes work."""
    d = mesh.size
    if batch_size % d:
        lower, upper = (batch_size // d) * d, (batch_size // d + 1) * d
        options = " or ".join(str(x) for x in (lower, upper) if x > 0)
        raise ValueError(f"batch_size {batch_size} does not divide evenly over {d} devices; use a multiple of "
                         f"{d} (e.g. {options}) or num_devices=1")


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_spec(mesh: Mesh, leading: int = 0) -> P:
    """Shards the batch axis (after ``leading`` unsharded axes) over the mesh."""
    return P(*([None] * leading), AXIS)


def put_replicated(tree: PyTree, mesh: Mesh) -> PyTree:
    """Places host or device arrays on every device of the mesh (works across hosts)."""
    sharding = replicated(mesh)

    def put(x):
        if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            return jax.device_put(x, sharding)  # one process, or a global array (e.g. restored from a checkpoint)
        host = np.asarray(x)  # the same on every process: each builds its own devices' shards from it
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(put, tree)
