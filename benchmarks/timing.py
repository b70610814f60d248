"""Timing helpers for train steps: scanned (as training runs them) and dispatched one by one.

    sec = scanned_step_seconds(step, state, batches)          # batches: leading axis N
    runner = ScannedSteps(step)                               # for round-robin timing
    state, sec = runner.time(state, batches)

A train step ``step(state, batch) -> (state, out)`` is timed the way
``mtl.train.fit`` runs it: ``N`` steps inside one jitted ``lax.scan`` over a
stack of batches that already lives on the device (or over index rows whose
batches are gathered inside the scan, with ``batch_fn``), the per-step outputs
stacked as the loop stacks them, and the wall time of the whole call divided
by ``N``. :class:`DispatchedSteps` times the same step compiled alone and
called once per batch from Python, blocking after every step (what
``benchmarks.balancer_step_time`` measures today); it also reports the step's
FLOPs from XLA's cost analysis. :func:`matmul_gflops` gives the practical
matmul peak of the backend on given shapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
StepFn = Callable[[PyTree, PyTree], tuple[PyTree, PyTree]]


def _leading(tree: PyTree) -> int:
    return int(jax.tree_util.tree_leaves(tree)[0].shape[0])


class ScannedSteps:
    """``N`` train steps in one jitted ``lax.scan``.

    Args:
      step_fn: ``step(state, batch) -> (state, out)`` (not jitted; it is traced
        into the scan).
      batch_fn: optional ``batch_fn(consts, x) -> batch`` building each step's
        batch inside the scan from the scanned ``x`` (e.g. a row of indices)
        and ``consts`` (e.g. device-resident columns); without it the scanned
        ``x`` is the batch.

    Calling the runner returns ``(state, outs)``; :meth:`time` returns
    ``(state, seconds per step)`` (the first call compiles: time it separately).
    """

    def __init__(self, step_fn: StepFn, batch_fn: Callable[[PyTree, PyTree], PyTree] | None = None):
        def run(state, xs, consts):
            def body(s, x):
                return step_fn(s, x if batch_fn is None else batch_fn(consts, x))

            return jax.lax.scan(body, state, xs)

        self._run = jax.jit(run)

    def __call__(self, state: PyTree, xs: PyTree, consts: PyTree = None) -> tuple[PyTree, PyTree]:
        return self._run(state, xs, consts)

    def time(self, state: PyTree, xs: PyTree, consts: PyTree = None) -> tuple[PyTree, float]:
        t0 = time.perf_counter()
        state, outs = jax.block_until_ready(self._run(state, xs, consts))
        return state, (time.perf_counter() - t0) / _leading(xs)


class DispatchedSteps:
    """One compiled train step, called once per batch from Python.

    Compiles ``step_fn`` ahead of time for ``(state, batch)``; ``flops`` is XLA's
    cost-analysis FLOP count of one step (``nan`` when the backend gives none).
    :meth:`time` runs one step per batch in ``batches`` (a sequence of batches),
    blocking after each, and returns ``(state, seconds per step)``.
    """

    def __init__(self, step_fn: StepFn, state: PyTree, batch: PyTree):
        self.compiled = jax.jit(step_fn).lower(state, batch).compile()
        self.flops = compiled_cost(self.compiled, "flops")
        self.bytes = compiled_cost(self.compiled, "bytes accessed")

    def __call__(self, state: PyTree, batch: PyTree) -> tuple[PyTree, PyTree]:
        return self.compiled(state, batch)

    def time(self, state: PyTree, batches: Sequence[PyTree]) -> tuple[PyTree, float]:
        t0 = time.perf_counter()
        for batch in batches:
            state, out = self.compiled(state, batch)
            jax.block_until_ready((state, out))
        return state, (time.perf_counter() - t0) / len(batches)


def compiled_cost(compiled, key: str) -> float:
    """``key`` (``"flops"``, ``"bytes accessed"``) of a compiled computation from XLA's cost analysis (``nan`` if
    unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return float("nan")
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    return float((cost or {}).get(key, float("nan")))


def scanned_step_seconds(step_fn: StepFn, state: PyTree, batches: PyTree, *, rounds: int = 3,
                         batch_fn: Callable[[PyTree, PyTree], PyTree] | None = None,
                         consts: PyTree = None) -> float:
    """Median seconds per step of ``step_fn`` scanned over ``batches`` (leading axis N).

    One untimed call compiles and warms up; then ``rounds`` timed calls, each
    continuing from the previous call's state.
    """
    runner = ScannedSteps(step_fn, batch_fn)
    state, _ = runner.time(state, batches, consts)
    times = []
    for _ in range(rounds):
        state, sec = runner.time(state, batches, consts)
        times.append(sec)
    return float(np.median(times))


def matmul_gflops(shapes: Sequence[tuple[int, int, int]], *, reps: int = 3) -> dict[str, float]:
    """GFLOP/s of a jitted ``jnp.dot`` for each ``(M, K, N)`` (best of ``reps`` after one warm-up)."""
    dot = jax.jit(jnp.dot)
    out = {}
    for m, k, n in shapes:
        a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
        jax.block_until_ready(dot(a, b))
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(dot(a, b))
            best = min(best, time.perf_counter() - t0)
        out[f"{m}x{k}x{n}"] = 2.0 * m * k * n / best / 1e9
    return out
