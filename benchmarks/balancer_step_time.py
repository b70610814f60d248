"""Step time of every balancer relative to equal weighting, side by side.

    python -m benchmarks.balancer_step_time                 # T=2 and T=7, all methods
    python -m benchmarks.balancer_step_time --tasks=2 --methods=ew,pcgrad,mgda

Model and batch follow the field notes' measurement: MMoE with 400 input
floats, 8 experts 400->256->128, towers 128->64->1, batch 1024, Adam. Steps are
timed the way training runs them: ``--scan_steps`` steps (distinct batches)
inside one compiled ``lax.scan`` (``benchmarks/timing.py``), time divided by
the steps; methods run round-robin (one scanned call of each method per round,
``--rounds`` rounds), so that machine noise hits all methods alike; the table
gives median milliseconds per step, the ratio to ``ew``, the balancer's share (``update %``: the median time of the
balancer's ``update`` alone on a random Jacobian shaped like what the step gives
it, divided by the method's step time) and the solver's share (``solver %``: the
same minus the time of the Gramian and one weighted sum, which every Gramian
method needs to combine gradients at all). Target: a solver share below 10% (``solver``
column). What a method's step should cost relative to ``ew`` is its FLOP ratio (one forward
and T pullbacks); ``benchmarks/step_time.py`` prints time over FLOP ratio for the main
methods. Methods with ``num_batches > 1`` compute K Jacobians per step by design.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import mtl.balancers as mb
import mtl.models as mm
from benchmarks.timing import ScannedSteps
from mtl.balancers.base import gramian, weighted_sum
from mtl.train.step import grads_template, init_train_state, make_train_step

FLAGS = flags.FLAGS
flags.DEFINE_string("tasks", "2,7", "Comma-separated task counts.")
flags.DEFINE_string("methods", "", "Comma-separated balancer names (default: all registered).")
flags.DEFINE_integer("rounds", 20, "Round-robin rounds (one step of every method per round).")
flags.DEFINE_integer("batch", 1024, "Batch size.")
flags.DEFINE_bool("rep_grad", False, "Per-task gradients at the shared representation.")
flags.DEFINE_integer("scan_steps", 10, "Steps per timed (scanned) call.")


def _setup(t, batch_size):
    model = mm.get("mmoe", num_tasks=t, num_numeric=400, num_experts=8, expert_hidden=(256, 128),
                   tower_hidden=(64,))
    rng = np.random.default_rng(0)
    batch = {"numeric": jnp.asarray(rng.normal(size=(batch_size, 400)), jnp.float32),
             "categorical": jnp.zeros((batch_size, 0), jnp.int32),
             "labels": jnp.asarray(rng.integers(0, 2, (batch_size, t)), jnp.float32)}
    return model, batch


def _stack(batch, k):
    return batch if k == 1 else jax.tree_util.tree_map(lambda x: jnp.stack([x] * k), batch)


def _batches(batch, k, n, seed=1):
    """``n`` distinct batches (permuted rows of ``batch``), stacked for the scan."""
    rng = np.random.default_rng(seed)
    size = batch["labels"].shape[0]
    perms = [jnp.asarray(rng.permutation(size)) for _ in range(n)]
    rows = [jax.tree_util.tree_map(lambda x, p=p: x[p], batch) for p in perms]
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[_stack(r, k) for r in rows])


def measure(t, names, rounds, batch_size, rep_grad=False, scan_steps=10):
    model, batch = _setup(t, batch_size)
    opt = optax.adam(1e-3)
    kinds = ("binary",) * t
    runners = {}
    for name in names:
        b = mb.with_run_facts(mb.get(name), steps_per_epoch=100, rep_grad=rep_grad)
        if rep_grad and not b.rep_grad:
            continue
        step = ScannedSteps(make_train_step(model, b, opt, kinds, rep_grad=rep_grad))
        template = grads_template(model, model.init(jax.random.key(0)), batch, rep_grad=rep_grad)
        grads_like = template if b.init_takes_grads_like else None
        state = init_train_state(model, b, opt, jax.random.key(0), grads_like=grads_like)
        kb = _batches(batch, b.num_batches, scan_steps)
        state, _ = step(state, kb)
        jax.block_until_ready(state)
        # the balancer alone, on a random Jacobian shaped like what the step gives it
        lead = (b.num_batches, t) if b.num_batches > 1 else (t,)
        leaves = [x for x in jax.tree_util.tree_leaves(template)]
        keys = jax.random.split(jax.random.key(1), len(leaves))
        jac = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template),
                                           [jax.random.normal(k, (*lead, *x.shape)) for k, x in zip(keys, leaves)])
        losses = jnp.ones(lead)
        upd = jax.jit(lambda l, g, s, k, b=b: b.update(l, g if b.needs_grads else None, s, key=k))
        bstate = b.init(t, grads_like=grads_like) if grads_like is not None else b.init(t)
        jax.block_until_ready(upd(losses, jac, bstate, jax.random.key(0)))
        runners[name] = {"step": step, "state": state, "batch": kb, "upd": upd, "jac": jac, "losses": losses,
                         "bstate": bstate, "times": [], "solver": []}
    # the part every Jacobian method shares: the Gramian and one weighted sum
    base_jac = next(x["jac"] for x in runners.values())
    if next(iter(mb.get(n).num_batches for n in runners)) > 1:
        base_jac = jax.tree_util.tree_map(lambda g: g[0], base_jac)
    shared_part = jax.jit(lambda g: weighted_sum(g, gramian(g).sum(0)))
    jax.block_until_ready(shared_part(base_jac))
    shared_times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        jax.block_until_ready(shared_part(base_jac))
        shared_times.append(time.perf_counter() - t0)
        for x in runners.values():
            x["state"], seconds = x["step"].time(x["state"], x["batch"])
            x["times"].append(seconds)
            if x["upd"] is not None:
                t0 = time.perf_counter()
                jax.block_until_ready(x["upd"](x["losses"], x["jac"], x["bstate"], jax.random.key(r)))
                x["solver"].append(time.perf_counter() - t0)
    base = np.median(runners["ew"]["times"]) if "ew" in runners else None
    shared_ms = np.median(shared_times) * 1e3
    rows = []
    for name, x in runners.items():
        ms = np.median(x["times"]) * 1e3
        solver = np.median(x["solver"]) * 1e3
        b = mb.with_run_facts(mb.get(name), steps_per_epoch=100, rep_grad=rep_grad)
        own = max(0.0, solver - shared_ms) if b.grads == "shared" else solver
        rows.append({"method": name, "grads": b.grads, "K": b.num_batches, "ms": ms,
                     "ratio": ms / (base * 1e3) if base else float("nan"), "update_share": solver / ms,
                     "solver_share": own / ms})
    return rows


def main(_):
    names = FLAGS.methods.split(",") if FLAGS.methods else sorted(mb.REGISTRY)
    if "ew" not in names:
        names = ["ew", *names]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; MMoE 400->8x(256,128), towers (64,), "
          f"batch {FLAGS.batch}, rep_grad={FLAGS.rep_grad}, {FLAGS.rounds} round-robin rounds of "
          f"{FLAGS.scan_steps} scanned steps")
    for t in map(int, FLAGS.tasks.split(",")):
        rows = measure(t, names, FLAGS.rounds, FLAGS.batch, FLAGS.rep_grad, FLAGS.scan_steps)
        print(f"\nT = {t}")
        print(f"{'method':14s} {'grads':12s} {'K':>2s} {'step ms':>9s} {'x ew':>6s} {'update %':>9s} "
              f"{'solver %':>9s}  solver")
        for r in sorted(rows, key=lambda r: r["ratio"]):
            target = ("ok" if r["solver_share"] < 0.10 else "over 10%") if r["grads"] == "shared" else ""
            print(f"{r['method']:14s} {r['grads']:12s} {r['K']:>2d} {r['ms']:9.2f} {r['ratio']:6.2f} "
                  f"{100 * r['update_share']:8.1f}% {100 * r['solver_share']:8.1f}%  {target}")


if __name__ == "__main__":
    app.run(main)
