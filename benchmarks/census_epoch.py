"""Wall time of training epochs of the census MMoE through ``mtl.train.fit`` (the CLI's path).

    python -m benchmarks.census_epoch --data_dir=../shared/data
    python -m benchmarks.census_epoch --synthetic_rows=4096       # no data needed (smoke / GPU script on CPU)

Reports the first epoch (compilation included), the median of the later
epochs, and the median train-step time; ``--json`` writes them.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
import optax
from absl import app, flags

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.train import fit

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Folder with census_income_kdd/.")
flags.DEFINE_integer("synthetic_rows", 0, "Use the synthetic generator with this many rows instead of census.")
flags.DEFINE_integer("epochs", 3, "Epochs (the first compiles).")
flags.DEFINE_string("methods", "ew,pcgrad", "Balancers.")
flags.DEFINE_string("json", "", "Write the results here.")


def main(_):
    if FLAGS.synthetic_rows:
        data = md.load("synthetic", num_train=FLAGS.synthetic_rows, num_validation=512, num_test=512)
        model = mm.get("mmoe", num_tasks=2, num_numeric=100, num_experts=8, expert_hidden=(64,), tower_hidden=(32,))
    else:
        data = md.load("census_income", data_dir=FLAGS.data_dir, task_group=1, protocol="test_split")
        model = mm.get("mmoe", num_tasks=2, num_numeric=len(data.numeric_names), vocab_sizes=data.vocab_sizes,
                       num_experts=8, expert_hidden=(64,), tower_hidden=(32,), embed_dim=8)
    out = {"device": jax.devices()[0].device_kind, "rows": len(data.train), "methods": {}}
    for method in FLAGS.methods.split(","):
        times = []
        t0 = time.perf_counter()
        s = fit(model, mb.get(method), data, optimizer=optax.adam(1e-3), epochs=FLAGS.epochs, batch_size=256,
                steps_per_call=200, progress=False,
                on_epoch=lambda r: times.append(time.perf_counter()))
        edges = [t0] + times
        epoch_s = np.diff(edges)
        out["methods"][method] = {"first_epoch_s": float(epoch_s[0]),
                                  "epoch_s": float(np.median(epoch_s[1:])) if len(epoch_s) > 1 else None,
                                  "step_ms": 1e3 * s["step_seconds"]}
        print(f"{method:8s} first epoch {epoch_s[0]:.2f} s (compiles), then {out['methods'][method]['epoch_s']} s "
              f"per epoch incl. evaluation; {1e3 * s['step_seconds']:.2f} ms per step", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    app.run(main)
