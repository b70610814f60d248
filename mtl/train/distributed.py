"""Several processes training one run (``--config.distributed=True``).

Every process runs the same command; :func:`initialize` connects them through
``jax.distributed`` before anything touches the XLA backend, after which
``jax.devices()`` spans every process and the step (one program over global
arrays, :mod:`mtl.train.devices`) runs unchanged. On CPU the cross-process
collectives are gloo's.

Where the processes are: ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process
0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; when none of them is set, a
cluster that jax detects (SLURM, Open MPI, Kubernetes, TPU pods) fills them in.
How long to wait, in seconds: ``MTL_DIST_INIT_TIMEOUT_S`` (for every process
to connect, default 300), ``MTL_DIST_HEARTBEAT_TIMEOUT_S`` (a process silent
this long is declared dead, default 30), ``MTL_DIST_SHUTDOWN_TIMEOUT_S`` (for
the others at a normal exit, default 60).

When a process dies, the others fail in their next collective (gloo sees the
connection close) or, if they are waiting on the coordination service, once the
heartbeat timeout has passed; an uncaught error then ends the process at once
with status 1 and, for a failed collective, one line saying that another
process probably died (no wait for the shutdown barrier).

Every process reads the same data and derives the same batch order from the
replicated run state, so each holds the same host arrays; only process 0
(:func:`is_main_process`) writes the run's files, while all of them take part in
orbax's checkpoint saves and restores (the workdir must be on a file system
every process sees).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import jax
import numpy as np

from mtl.config import ConfigError

ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
class ProcessGroupError(RuntimeError):
    """A collective operation with the other processes failed (one of them probably died)."""


TIMEOUTS = {"MTL_DIST_INIT_TIMEOUT_S": 300, "MTL_DIST_HEARTBEAT_TIMEOUT_S": 30, "MTL_DIST_SHUTDOWN_TIMEOUT_S": 60}


def _int_env(name: str, default: int | None, minimum: int) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: must be an integer") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name}={raw!r}: must be >= {minimum}")
    return value


def initialize() -> None:
    """Joins the process group described by the environment (see the module docstring).

    Call it before any JAX computation; calling it again is a no-op.
    """
    from jax._src import xla_bridge

    if jax.distributed.is_initialized():
        return
    if xla_bridge.backends_are_initialized():
        raise RuntimeError("--config.distributed=True: the JAX backend was initialised before "
                           "mtl.train.distributed.initialize(); call it before any JAX computation")
    address = os.environ.get(ENV[0]) or None
    num = _int_env(ENV[1], None, 1)
    pid = _int_env(ENV[2], None, 0)
    given = [name for name, v in zip(ENV, (address, num, pid)) if v is not None]
    if given and len(given) < 3:
        missing = [name for name in ENV if name not in given]
        raise ConfigError(f"--config.distributed=True: {', '.join(given)} set but {', '.join(missing)} not; "
                          f"set all of {', '.join(ENV)} (or none, on a cluster jax detects)")
    if num is not None and pid >= num:
        raise ConfigError(f"environment variable JAX_PROCESS_ID={pid}: must be < JAX_NUM_PROCESSES={num}")
    init, heartbeat, shutdown = (_int_env(name, default, 1) for name, default in TIMEOUTS.items())
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid,
                                   initialization_timeout=init, heartbeat_timeout_seconds=heartbeat,
                                   shutdown_timeout_seconds=shutdown)
    except ValueError as e:  # no cluster detected
        raise ConfigError(f"--config.distributed=True: {e} Set {', '.join(ENV)}, or run on a cluster jax "
                          "detects") from None
    sys.excepthook = _exit_now(sys.excepthook)


def _exit_now(report):
    """An uncaught exception ends the process at once (status 1), without the shutdown
    barrier that would wait for the other processes; a failed cross-process operation
    (another process died) is reported in one line."""

    def hook(exc_type, exc, tb):
        if isinstance(exc, (jax.errors.JaxRuntimeError, ProcessGroupError)):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc_type.__name__
            print(f"error: process {jax.process_index()} of {jax.process_count()}: a cross-process operation "
                  f"failed, most likely because another process of the run died (see its log): {first}",
                  file=sys.stderr)
        else:
            report(exc_type, exc, tb)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    return hook


def is_main_process() -> bool:
    """Process 0: the one that writes the run's files (always true in a single process)."""
    return jax.process_index() == 0


def broadcast_json(value: Any) -> Any:
    """``value`` (JSON-able) of process 0, returned on every process; waits for it."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_main_process() else np.zeros(0, np.uint8)
    size = int(_collective(multihost_utils.broadcast_one_to_all, np.int32(data.size)))
    data = np.pad(data, (0, size - data.size))
    return json.loads(_collective(multihost_utils.broadcast_one_to_all, data).tobytes().decode())


def agreed_signal(received: list[int]) -> int:
    """The first signal any process has caught (0: none), the same on every process, so that
    all of them checkpoint and stop after the same call. Every process must call it at the same point."""
    mine = int(received[0]) if received else 0
    if jax.process_count() == 1:
        return mine
    from jax.experimental import multihost_utils

    return int(np.max(_collective(multihost_utils.process_allgather, np.int32(mine))))


def _collective(fn, x):
    try:
        return np.asarray(fn(x))
    except Exception as e:  # noqa: BLE001 - jax raises ValueError or JaxRuntimeError when a peer is gone
        raise ProcessGroupError(str(e).strip() or type(e).__name__) from e
