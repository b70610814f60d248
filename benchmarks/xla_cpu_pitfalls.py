"""Three XLA:CPU costs that shaped the train step and the balancers, measured side by side.

    python -m benchmarks.xla_cpu_pitfalls

On per-task gradients shaped like the MMoE benchmark's shared parameters
(1.1M floats per task) and the same model and batch as
``benchmarks.balancer_step_time``, round-robin over ``--rounds``:

1. A LAPACK call (solve, eigh) on the 2 x 2 Gramian inside the compiled
   update, against the same update without it, with the Gramian computed as
   pairwise products (``gramian`` for T <= 3) or as a dot (T > 3): why the
   T x T solvers use ``small_solve`` / ``small_eigh`` (plain jnp).
2. Summing over the leading task axis (``g.sum(0)``) against the unrolled sum of
   the T rows (``sum_tasks``), at T = 2 and 7.
3. Per-task gradients as a loop of pullbacks (what the train step does) against
   ``jax.vmap`` over the pullback, with a single pullback (equal weighting)
   for reference; plus the compiled FLOP count of each, from XLA's cost analysis.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import mtl.models as mm
from mtl.balancers.base import gramian, small_eigh, small_solve, sum_tasks, weighted_sum
from mtl.train.step import task_losses

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 20, "Round-robin rounds.")


def _race(fns: dict, args: dict, rounds: int) -> dict:
    """Median milliseconds of each jitted function, run round-robin."""
    jitted = {k: jax.jit(f) for k, f in fns.items()}
    for k, f in jitted.items():
        jax.block_until_ready(f(*args[k]))
    times = {k: [] for k in jitted}
    for _ in range(rounds):
        for k, f in jitted.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args[k]))
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def _task_grads(t: int):
    model = mm.get("mmoe", num_tasks=t, num_numeric=400, num_experts=8, expert_hidden=(256, 128), tower_hidden=(64,))
    shared = model.init(jax.random.key(0))["shared"]
    leaves, treedef = jax.tree_util.tree_flatten(shared)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, (t, *x.shape)) for k, x in zip(keys, leaves)])


def _dot_gramian(j):
    return sum(m @ m.T for m in (g.reshape(g.shape[0], -1) for g in jax.tree_util.tree_leaves(j)))


def lapack_calls(rounds):
    j = _task_grads(2)
    ones = jnp.ones(2)
    fns = {}
    for label, gram in (("pairwise Gramian (T <= 3)", gramian), ("dot Gramian (T > 3)", _dot_gramian)):
        fns[f"{label} + weighted sum"] = lambda j, gram=gram: weighted_sum(j, gram(j).sum(0))
        fns["  + jnp.linalg.solve"] = lambda j, gram=gram: weighted_sum(j, jnp.linalg.solve(gram(j), ones))
        fns["  + jnp.linalg.eigh"] = lambda j, gram=gram: weighted_sum(j, jnp.linalg.eigh(gram(j))[0])
        fns["  + small_solve (plain jnp)"] = lambda j, gram=gram: weighted_sum(j, small_solve(gram(j), ones))
        fns["  + small_eigh (plain jnp)"] = lambda j, gram=gram: weighted_sum(j, small_eigh(gram(j))[0])
        res = _race(fns, {k: (j,) for k in fns}, rounds)
        yield res
        fns = {}


def task_axis_sums(rounds):
    out = {}
    for t in (2, 7):
        j = _task_grads(t)
        fns = {f"T={t}: g.sum(0)": lambda j: jax.tree_util.tree_map(lambda g: g.sum(0), j),
               f"T={t}: sum_tasks (unrolled rows)": sum_tasks}
        out.update(_race(fns, {k: (j,) for k in fns}, rounds))
    return out


def pullbacks(rounds):
    t, b = 2, 1024
    model = mm.get("mmoe", num_tasks=t, num_numeric=400, num_experts=8, expert_hidden=(256, 128), tower_hidden=(64,))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"numeric": jnp.asarray(rng.normal(size=(b, 400)), jnp.float32),
             "categorical": jnp.zeros((b, 0), jnp.int32),
             "labels": jnp.asarray(rng.integers(0, 2, (b, t)), jnp.float32)}

    def loss(p):
        return task_losses(model.apply(p, batch["numeric"], batch["categorical"]), batch["labels"], ("binary",) * t)

    eye = jnp.eye(t)

    def one(p):
        return jax.vjp(loss, p)[1](jnp.ones(t))

    def loop(p):
        pull = jax.vjp(loss, p)[1]
        return [pull(eye[i]) for i in range(t)]

    def vmapped(p):
        return jax.vmap(jax.vjp(loss, p)[1])(eye)

    fns = {"one pullback (equal weighting)": one, "T pullbacks, a loop": loop, "T pullbacks, vmap": vmapped}
    ms = _race(fns, {k: (params,) for k in fns}, rounds)
    flops = {}
    for k, f in fns.items():
        cost = jax.jit(f).lower(params).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        flops[k] = float(cost.get("flops", float("nan")))
    return ms, flops


def main(_):
    r = FLAGS.rounds
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {r} round-robin rounds\n")
    print("1. LAPACK calls inside a compiled update (2 tasks, 1.1M-float gradients)")
    for res in lapack_calls(r):
        base = next(iter(res.values()))
        for k, v in res.items():
            print(f"   {k:40s} {v:7.2f} ms  ({v - base:+.2f})")
    print("\n2. Summing 1.1M-float task gradients over the task axis")
    for k, v in task_axis_sums(r).items():
        print(f"   {k:40s} {v:7.2f} ms")
    print("\n3. Per-task gradients of the MMoE benchmark model (T=2, batch 1024)")
    ms, flops = pullbacks(r)
    b_ms, b_fl = ms["one pullback (equal weighting)"], flops["one pullback (equal weighting)"]
    for k in ms:
        print(f"   {k:40s} {ms[k]:7.2f} ms  x{ms[k] / b_ms:4.2f} time   x{flops[k] / b_fl:4.2f} FLOPs")


if __name__ == "__main__":
    app.run(main)
