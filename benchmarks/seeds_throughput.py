"""Throughput of S seeds trained side by side (``jax.vmap``) against S sequential runs.

    python -m benchmarks.seeds_throughput                        # census and synthetic models, ew and pcgrad
    python -m benchmarks.seeds_throughput --models=synthetic --seeds=1,5 --epochs=2

Each configuration trains with ``mtl.train.fit`` for ``--epochs`` epochs and
reports the median seconds per compiled train step after the first call
(compilation excluded; evaluation excluded). A sequential run of S seeds costs S
single-seed runs, so the speed-up of vectorising is ``S * t_1 / t_S`` (steps
of all S replicas per second, against one replica's). Target (issue 8): >= 2.5x
at S = 5 for the small models on a 2-core CPU. Measured side by side in one
process; ``--json`` writes the rows.
"""

from __future__ import annotations

import json
import time

import jax
import optax
from absl import app, flags

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.train import fit

FLAGS = flags.FLAGS
flags.DEFINE_string("models", "census,synthetic", "census (census_income MMoE, batch 256) and/or synthetic (MMoE "
                    "paper sizes, batch 128).")
flags.DEFINE_string("methods", "ew,pcgrad", "Balancers.")
flags.DEFINE_string("seeds", "1,5,10", "Seed counts S.")
flags.DEFINE_integer("epochs", 2, "Epochs per measurement (the first call compiles and is not timed).")
flags.DEFINE_string("data_dir", "../shared/data", "Folder with census_income_kdd/ (for --models=census).")
flags.DEFINE_string("json", "", "Write the rows here.")
flags.DEFINE_integer("synthetic_rows", 50_000, "Training rows of the synthetic data.")


def setup(kind: str):
    if kind == "census":
        data = md.load("census_income", data_dir=FLAGS.data_dir, task_group=1, protocol="test_split")
        model = mm.get("mmoe", num_tasks=2, num_numeric=len(data.numeric_names), vocab_sizes=data.vocab_sizes,
                       num_experts=8, expert_hidden=(64,), tower_hidden=(32,), embed_dim=8)
        return data, model, 256
    data = md.load("synthetic", correlation=0.9, num_train=FLAGS.synthetic_rows, num_validation=1000, num_test=1000)
    return data, mm.get("mmoe", num_tasks=2, num_numeric=100), 128


def step_seconds(data, model, method, batch_size, seeds):
    out = fit(model, mb.get(method), data, optimizer=optax.adam(1e-3), epochs=FLAGS.epochs, batch_size=batch_size,
              seed=0 if seeds == 1 else list(range(seeds)), steps_per_call=50, progress=False)
    run = out if seeds == 1 else out["runs"][0]
    return run["step_seconds"]


def main(_):
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.device_count()} device(s))")
    rows = []
    counts = [int(s) for s in FLAGS.seeds.split(",")]
    for kind in FLAGS.models.split(","):
        data, model, batch = setup(kind)
        for method in FLAGS.methods.split(","):
            times = {}
            for s in counts:
                t0 = time.perf_counter()
                times[s] = step_seconds(data, model, method, batch, s)
                row = {"model": kind, "method": method, "seeds": s, "step_ms": times[s] * 1e3,
                       "replica_steps_per_s": s / times[s], "wall_s": time.perf_counter() - t0}
                if 1 in times:
                    row["speedup_vs_sequential"] = s * times[1] / times[s]
                rows.append(row)
                print(f"{kind:10s} {method:8s} S={s:3d}: {row['step_ms']:8.2f} ms per step "
                      f"({row['replica_steps_per_s']:8.1f} replica-steps/s)"
                      + (f", {row['speedup_vs_sequential']:.2f}x sequential" if "speedup_vs_sequential" in row else ""),
                      flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"device": jax.devices()[0].device_kind, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
