"""mtl's train step against a bare Flax step and eager PyTorch, alternated in one process.

    python -m benchmarks.step_time                                  # paper + census sizes, T = 2 and 7
    python -m benchmarks.step_time --sizes=paper --tasks=2 --methods=ew,pcgrad --rounds=3 --json=/tmp/st.json
    python -m benchmarks.step_time --sizes=tiny --methods=ew,pcgrad --tasks=2 --rounds=1   # smoke

The same MMoE and the same method in mtl (``mtl.models.get("mmoe")``,
``mtl.train.make_train_step``, Adam) and in ``benchmarks.torch_mmoe`` (eager
PyTorch, batched experts, LibMTL-style per-task gradients; optional extra
``bench-torch``), on the same random data:

* ``paper``: 400 dense inputs, 8 experts 400 -> 256 -> 128, towers 128 -> 64 -> 1,
  batch 1024 (the field notes' setup). ``--scan_steps`` distinct batches lie
  on the device as one stack; mtl runs them in one jitted ``lax.scan``
  (``mtl_ms`` = call time / steps, the way training runs), PyTorch loops over
  the same batches.
* ``census``: the census MMoE of ``experiments/configs/census_income.py`` (8
  numeric features, 31 categorical fields with the vocabulary sizes of the
  ``test_split`` train split in :data:`CENSUS_VOCAB`, 8-dimensional embeddings,
  8 experts of 64 units, towers (32,), batch 256) on random data of the train
  split's size (49,881 rows: 194 steps an epoch). mtl runs a whole epoch in one
  compiled scan that gathers each batch from device-resident columns by a
  fixed permutation; PyTorch loops over the same steps, gathering each batch
  with ``index_select`` from in-memory tensors. Per-step overhead dominates here.
* ``tiny``: a few-unit MMoE with two small embedding fields, run like
  ``census`` (the smoke test's size; its numbers mean nothing).

Every method's mtl step is also timed dispatched one step at a time from
Python, blocking after each (``mtl_dispatched_ms``: what
``benchmarks.balancer_step_time`` times today). Each round runs, per method in
turn, the mtl scan, the dispatched steps and the PyTorch steps; the reported
figure is the median over ``--rounds`` of each round's time per step (one
untimed warm-up round first). Methods with a PyTorch implementation:
``benchmarks.torch_mmoe.METHODS``; others get null torch fields.

Reported per (size, method, T): ``mtl_ms``, ``mtl_dispatched_ms``, ``torch_ms``,
``ratio = torch_ms / mtl_ms`` (> 1: mtl faster), ``ew_ratio = mtl_ms / mtl_ms(ew)``
(also for dispatched and PyTorch), steps per second, the step's FLOPs from XLA's
cost analysis of the compiled step, the GFLOP/s it achieves (PyTorch's with the
same FLOP count) and the fraction of the matmul peak measured in the same run
(best of ``jnp.dot`` / ``torch.matmul`` over a few representative shapes).
The simplest program doing the same work, a hand-written Flax linen step
(:mod:`benchmarks.bare_flax`: vmapped Dense experts, per-task gates and towers,
the loss sum, Adam), is scanned the same way each round: ``bare_ratio`` =
``mtl_ms / bare_ms`` (target for ew: <= 1.05). ``flop_ratio`` = the method's
FLOPs / ew's and ``cost_over_flops`` = ``ew_ratio / flop_ratio`` (target for the
Jacobian methods: <= 1.1).
``--json PATH`` writes all of it (see :func:`main`).

Timings taken while other jobs run are distorted 2-7x, ratios included.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import mtl.balancers as mb
import mtl.models as mm
from benchmarks.bare_flax import BareMMoE, bare_train_step
from benchmarks.timing import DispatchedSteps, ScannedSteps, matmul_gflops
from mtl.train import init_train_state, make_train_step

try:
    import torch

    from benchmarks import torch_mmoe
except ImportError:  # the optional extra bench-torch
    torch, torch_mmoe = None, None

FLAGS = flags.FLAGS
flags.DEFINE_string("sizes", "paper,census", "Comma-separated sizes: paper, census, tiny.")
flags.DEFINE_string("tasks", "2,7", "Comma-separated task counts.")
flags.DEFINE_string("methods", "ew,uw,gradnorm,pcgrad,mgda,cagrad,nash_mtl",
                    "Comma-separated balancer names (ew is always added).")
flags.DEFINE_integer("rounds", 3, "Timed rounds (one untimed warm-up round comes first).")
flags.DEFINE_integer("scan_steps", 20, "Steps per timed call for the paper size (distinct batches).")
flags.DEFINE_bool("torch", True, "Time the PyTorch implementation too (when torch is installed).")
flags.DEFINE_string("json", None, "Write the results to this JSON file.")
flags.DEFINE_integer("seed", 0, "Seed for data, initialisation and PCGrad's order.")
flags.DEFINE_string("torch_device", "", "PyTorch device: cpu or cuda (default: cuda when available).")

#: Vocabulary sizes of Census-Income's 31 categorical fields (``test_split``
#: train split, ``mtl.data.load("census_income")``), fixed here so that the
#: benchmark needs no data files; its data are random.
CENSUS_VOCAB = (10, 53, 48, 18, 4, 25, 16, 6, 11, 3, 4, 7, 9, 7, 7, 52, 34, 9, 11, 10, 11, 4, 5, 6, 44, 44, 44, 6,
                4, 4, 4)


class Size(NamedTuple):
    model: dict  # keyword sizes for mtl.models.get("mmoe") and torch_mmoe.MMoE
    batch: int
    rows: int | None  # rows of an epoch (gathered inside the scan); None: a stack of --scan_steps batches
    peak_shapes: tuple  # (M, K, N) matmuls for the practical peak


SIZES = {
    "paper": Size({"num_numeric": 400, "vocab_sizes": (), "num_experts": 8, "expert_hidden": (256, 128),
                   "tower_hidden": (64,)}, 1024, None, ((1024, 400, 2048), (2048, 2048, 2048))),
    "census": Size({"num_numeric": 8, "vocab_sizes": CENSUS_VOCAB, "embed_dim": 8, "num_experts": 8,
                    "expert_hidden": (64,), "tower_hidden": (32,)}, 256, 49_881,
                   ((256, 256, 512), (1024, 400, 2048), (2048, 2048, 2048))),
    "tiny": Size({"num_numeric": 6, "vocab_sizes": (5, 3), "embed_dim": 4, "num_experts": 3, "expert_hidden": (8,),
                  "tower_hidden": (4,)}, 16, 32, ((64, 64, 64),)),
}


def make_data(size: Size, t: int, steps: int, seed: int) -> tuple[dict, np.ndarray]:
    """Random columns (``numeric``, ``categorical``, ``labels``) and the ``(steps, batch)`` row indices."""
    rng = np.random.default_rng(seed)
    n = size.rows if size.rows is not None else steps * size.batch
    vocab = size.model.get("vocab_sizes", ())
    cols = {
        "numeric": rng.normal(size=(n, size.model["num_numeric"])).astype(np.float32),
        "categorical": np.stack([rng.integers(0, v, n) for v in vocab], axis=1).astype(np.int32)
        if vocab else np.zeros((n, 0), np.int32),
        "labels": rng.integers(0, 2, (n, t)).astype(np.float32),
    }
    if size.rows is None:
        idx = np.arange(n).reshape(steps, size.batch)
    else:
        idx = rng.permutation(n)[: steps * size.batch].reshape(steps, size.batch)
    return cols, idx


def _gather(cols, idx):
    return {k: jnp.take(v, idx, axis=0) for k, v in cols.items()}


class Runner:
    """Everything timed for one method: mtl scanned, mtl dispatched, PyTorch."""

    def __init__(self, name, model, t, size, cols, idx, dev_cols, dev_batches, use_torch, seed):
        b = mb.get(name)
        opt = optax.adam(1e-3)
        step = make_train_step(model, b, opt, ("binary",) * t)
        if b.num_batches > 1:  # K batches a step by design: the same batch K times
            inner, k = step, b.num_batches
            step = lambda s, x: inner(s, jax.tree_util.tree_map(lambda a: jnp.stack([a] * k), x))  # noqa: E731
        grads_like = None
        if b.init_takes_grads_like:
            from mtl.train.step import grads_template  # only for methods with per-coordinate state

            grads_like = grads_template(model, model.init(jax.random.key(seed)), dev_batches[0])
        state = init_train_state(model, b, opt, jax.random.key(seed), grads_like=grads_like)
        self.name = name
        self.dispatched = DispatchedSteps(step, state, dev_batches[0])
        self.flops, self.bytes = self.dispatched.flops, self.dispatched.bytes
        epoch = size.rows is not None
        self.scanned = ScannedSteps(step, _gather if epoch else None)
        self.xs = jnp.asarray(idx) if epoch else {k: v.reshape(idx.shape[0], size.batch, *v.shape[1:])
                                                   for k, v in dev_cols.items()}
        self.consts = dev_cols if epoch else None
        self.state_scan = self.state_disp = state
        self.dev_batches = dev_batches
        self.trainer = None
        self.times = {"mtl": [], "mtl_dispatched": [], "torch": []}
        if use_torch and name in torch_mmoe.METHODS:
            device = FLAGS.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.trainer = torch_mmoe.TorchTrainer(name, num_tasks=t, seed=seed, device=device, **size.model)
            self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
            tc = {k: (torch.from_numpy(v).long() if k == "categorical" else torch.from_numpy(v)).to(device)
                  for k, v in cols.items()}
            if epoch:  # a gather per step, like a training loop over in-memory tensors
                ti = torch.from_numpy(idx).long().to(device)
                self.torch_batch = lambda i: tuple(tc[k].index_select(0, ti[i])  # noqa: E731
                                                   for k in ("numeric", "categorical", "labels"))
            else:  # contiguous views of the stacked batches
                bs = size.batch
                self.torch_batch = lambda i: tuple(tc[k][i * bs:(i + 1) * bs]  # noqa: E731
                                                   for k in ("numeric", "categorical", "labels"))
        self.steps = idx.shape[0]

    def round(self, record: bool):
        self.state_scan, sec = self.scanned.time(self.state_scan, self.xs, self.consts)
        if record:
            self.times["mtl"].append(sec)
        self.state_disp, sec = self.dispatched.time(self.state_disp, self.dev_batches)
        if record:
            self.times["mtl_dispatched"].append(sec)
        if self.trainer is not None:
            t0 = time.perf_counter()
            for i in range(self.steps):
                self.trainer.step(*self.torch_batch(i))
            self.sync()
            if record:
                self.times["torch"].append((time.perf_counter() - t0) / self.steps)


class BareRunner:
    """The bare Flax step (:mod:`benchmarks.bare_flax`) on the same data, scanned like mtl's."""

    def __init__(self, t, size, idx, dev_cols, dev_batches, seed):
        model = BareMMoE(num_tasks=t, vocab_sizes=tuple(size.model.get("vocab_sizes", ())),
                         embed_dim=size.model.get("embed_dim", 8), num_experts=size.model["num_experts"],
                         expert_hidden=tuple(size.model["expert_hidden"]),
                         tower_hidden=tuple(size.model["tower_hidden"]))
        state, step = bare_train_step(model, optax.adam(1e-3), dev_batches[0], jax.random.key(seed))
        self.flops = DispatchedSteps(step, state, dev_batches[0]).flops
        epoch = size.rows is not None
        self.scanned = ScannedSteps(step, _gather if epoch else None)
        self.xs = jnp.asarray(idx) if epoch else {k: v.reshape(idx.shape[0], size.batch, *v.shape[1:])
                                                   for k, v in dev_cols.items()}
        self.consts = dev_cols if epoch else None
        self.state = state
        self.times = []

    def round(self, record: bool):
        self.state, sec = self.scanned.time(self.state, self.xs, self.consts)
        if record:
            self.times.append(sec)


def _ms(times):
    return 1e3 * float(np.median(times)) if times else None


def _div(a, b):
    return a / b if a is not None and b else None


def measure(size_name: str, t: int, names: list[str], rounds: int, scan_steps: int, use_torch: bool, seed: int,
            peak: dict) -> list[dict]:
    """Times every method at one size and task count; returns one row per method."""
    size = SIZES[size_name]
    steps = scan_steps if size.rows is None else size.rows // size.batch
    model = mm.get("mmoe", num_tasks=t, **size.model)
    cols, idx = make_data(size, t, steps, seed)
    dev_cols = {k: jnp.asarray(v) for k, v in cols.items()}
    gather = jax.jit(_gather)
    dev_batches = [jax.block_until_ready(gather(dev_cols, jnp.asarray(i))) for i in idx]
    runners = [Runner(n, model, t, size, cols, idx, dev_cols, dev_batches, use_torch, seed) for n in names]
    bare = BareRunner(t, size, idx, dev_cols, dev_batches, seed)
    for r in range(rounds + 1):  # round 0 compiles and warms up
        bare.round(record=r > 0)
        for x in runners:
            x.round(record=r > 0)
    ew = next(x for x in runners if x.name == "ew")
    base = {k: _ms(v) for k, v in ew.times.items()}
    bare_ms = _ms(bare.times)
    rows = []
    for x in runners:
        ms = {k: _ms(v) for k, v in x.times.items()}
        gflop = x.flops / 1e9 if np.isfinite(x.flops) else None
        mtl_gflops = _div(gflop, ms["mtl"] and ms["mtl"] / 1e3)
        torch_gflops = _div(gflop, ms["torch"] and ms["torch"] / 1e3)
        rows.append({
            "size": size_name, "method": x.name, "T": t, "batch": size.batch, "steps_per_call": x.steps,
            "mtl_ms": ms["mtl"], "mtl_dispatched_ms": ms["mtl_dispatched"], "torch_ms": ms["torch"],
            "ratio": _div(ms["torch"], ms["mtl"]),
            "ew_ratio": _div(ms["mtl"], base["mtl"]),
            "mtl_dispatched_ew_ratio": _div(ms["mtl_dispatched"], base["mtl_dispatched"]),
            "torch_ew_ratio": _div(ms["torch"], base["torch"]),
            "mtl_steps_per_s": _div(1e3, ms["mtl"]), "mtl_dispatched_steps_per_s": _div(1e3, ms["mtl_dispatched"]),
            "torch_steps_per_s": _div(1e3, ms["torch"]),
            "gflop_per_step": gflop, "mtl_gflops": mtl_gflops,
            "mtl_peak_fraction": _div(mtl_gflops, peak["jax_peak"]),
            "torch_gflops": torch_gflops, "torch_peak_fraction": _div(torch_gflops, peak.get("torch_peak")),
            "bare_ms": bare_ms, "bare_gflop_per_step": bare.flops / 1e9,
            "bare_ratio": _div(ms["mtl"], bare_ms),
            "flop_ratio": _div(x.flops, ew.flops),
            "gb_per_step": x.bytes / 1e9 if np.isfinite(x.bytes) else None,
            "byte_ratio": _div(x.bytes, ew.bytes) if np.isfinite(x.bytes) else None,
            "cost_over_flops": _div(_div(ms["mtl"], base["mtl"]), _div(x.flops, ew.flops)),
            "rounds_ms": {**{k: [1e3 * s for s in v] for k, v in x.times.items()},
                          "bare": [1e3 * s for s in bare.times]},
        })
    return rows


def print_table(rows: list[dict], peak: dict) -> None:
    r0 = rows[0]
    torch_peak = f", torch.matmul {peak['torch_peak']:.0f}" if peak.get("torch_peak") else ""
    print(f"\n{r0['size']}  T = {r0['T']}  batch {r0['batch']}  ({r0['steps_per_call']} steps a call; "
          f"matmul peak: jnp.dot {peak['jax_peak']:.0f} GFLOP/s{torch_peak})")
    print(f"bare Flax linen step (benchmarks/bare_flax.py): {r0['bare_ms']:.2f} ms, "
          f"{r0['bare_gflop_per_step']:.3f} GFLOP; x bare = mtl ms / bare ms; "
          f"x flops = (x ew) / (GFLOP / GFLOP of ew); GB = bytes accessed per step, x bytes = GB / GB of ew "
          f"(XLA's cost analysis)")
    print(f"{'method':10s} {'mtl ms':>8s} {'disp ms':>8s} {'torch ms':>9s} {'torch/mtl':>9s} {'x ew':>6s} "
          f"{'disp x ew':>9s} {'torch x ew':>10s} {'x bare':>6s} {'x flops':>7s} {'GFLOP':>7s} {'mtl GF/s':>8s} "
          f"{'%peak':>6s} {'torch GF/s':>10s} {'%peak':>6s} {'GB':>6s} {'x bytes':>7s}")

    def f(v, w, p):
        return f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}s}"

    def pct(v):
        return f"{100 * v:5.0f}%" if v is not None else f"{'-':>6s}"

    for r in rows:
        print(f"{r['method']:10s} {f(r['mtl_ms'], 8, 2)} {f(r['mtl_dispatched_ms'], 8, 2)} {f(r['torch_ms'], 9, 2)} "
              f"{f(r['ratio'], 9, 2)} {f(r['ew_ratio'], 6, 2)} {f(r['mtl_dispatched_ew_ratio'], 9, 2)} "
              f"{f(r['torch_ew_ratio'], 10, 2)} {f(r['bare_ratio'], 6, 2)} {f(r['cost_over_flops'], 7, 2)} "
              f"{f(r['gflop_per_step'], 7, 3)} {f(r['mtl_gflops'], 8, 1)} "
              f"{pct(r['mtl_peak_fraction'])} {f(r['torch_gflops'], 10, 1)} {pct(r['torch_peak_fraction'])} "
              f"{f(r['gb_per_step'], 6, 3)} {f(r['byte_ratio'], 7, 2)}")


def measure_peak(size_name: str, use_torch: bool) -> dict:
    shapes = SIZES[size_name].peak_shapes
    jax_g = matmul_gflops(shapes)
    out = {"shapes": [list(s) for s in shapes], "jax_gflops": jax_g, "jax_peak": max(jax_g.values())}
    if use_torch:
        torch_g = torch_mmoe.matmul_gflops(shapes)
        out.update(torch_gflops=torch_g, torch_peak=max(torch_g.values()))
    return out


def main(argv):
    """Prints one table per (size, T); ``--json`` writes ``{"meta", "peak": {size: ...}, "results": [row, ...]}``
    with one row per (size, method, T) holding the fields listed in the module docstring (null where not
    measured) and ``rounds_ms``, every round's time per step."""
    del argv
    sizes = [s for s in FLAGS.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise app.UsageError(f"unknown sizes {unknown}; choose from {', '.join(SIZES)}")
    names = [m for m in FLAGS.methods.split(",") if m]
    for m in names:
        if m not in mb.REGISTRY:
            raise app.UsageError(f"unknown method {m!r}")
    names = ["ew", *[m for m in names if m != "ew"]]
    use_torch = FLAGS.torch and torch is not None
    if FLAGS.torch and torch is None:
        print("PyTorch is not installed (optional extra bench-torch): timing mtl only, torch fields are null.")
    threads = torch_mmoe.set_threads() if use_torch else None
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "jax": jax.__version__, "backend": jax.devices()[0].platform, "device": str(jax.devices()[0].device_kind),
        "torch": torch.__version__ if use_torch else None, "torch_threads": threads,
        "cagrad_torch_solver": torch_mmoe.CAGRAD_SOLVER if use_torch else None,
        "sizes": sizes, "tasks": FLAGS.tasks, "methods": names, "rounds": FLAGS.rounds,
        "scan_steps": FLAGS.scan_steps, "seed": FLAGS.seed, "optimizer": "adam(1e-3)",
        "timing": "median over rounds of (call time / steps); mtl scanned in one jitted lax.scan, "
                  "dispatched blocks after every step",
    }
    with_torch = f"torch {meta['torch']} ({threads} threads)" if use_torch else "without torch"
    print(f"jax {meta['jax']} on {meta['backend']} ({meta['cpus']} cpus), {with_torch}; "
          f"{FLAGS.rounds} rounds after one warm-up round")
    peaks, results = {}, []
    for size_name in sizes:
        peaks[size_name] = measure_peak(size_name, use_torch)
        for t in map(int, FLAGS.tasks.split(",")):
            rows = measure(size_name, t, names, FLAGS.rounds, FLAGS.scan_steps, use_torch, FLAGS.seed,
                           peaks[size_name])
            print_table(rows, peaks[size_name])
            results.extend(rows)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"meta": meta, "peak": peaks, "results": results}, f, indent=1)
        print(f"\nwrote {FLAGS.json}")


if __name__ == "__main__":
    app.run(main)
