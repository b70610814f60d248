"""An AliExpress-format country at e-commerce scale: load it, then train MMoE for one epoch.

    python -m benchmarks.aliexpress_at_scale --rows=20000000 --out=/tmp/ae20m --budget_mb=2048

Generates the files with ``benchmarks.make_ecommerce_files`` when they are
missing (``--rows`` in total, 20% in test.csv), loads them through
``mtl.data.load("aliexpress", ...)`` (first load, then the memory-mapped cached
load), and trains the AliExpress config's MMoE (batch 2048, embeddings 128,
towers (128, 64)) with equal weighting for ``--epochs`` epochs through
``mtl.train.fit``. With ``--budget_mb`` smaller than the training split, the
split stays on the host and each compiled call's rows are streamed to the
device. Prints and (``--json``) writes load times, epoch time, steps per
second and peak resident memory.
"""

from __future__ import annotations

import json
import pathlib
import resource
import subprocess
import sys
import time

import jax
import optax
from absl import app, flags

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.train import fit

FLAGS = flags.FLAGS
flags.DEFINE_integer("rows", 20_000_000, "Total rows (train + test) of the generated country.")
flags.DEFINE_string("out", "/tmp/ae_scale", "Folder for the generated files and the cache.")
flags.DEFINE_integer("budget_mb", 2048, "Device memory budget for the training split (0: keep it on the device).")
flags.DEFINE_integer("epochs", 1, "Training epochs.")
flags.DEFINE_integer("batch_size", 2048, "Batch size.")
flags.DEFINE_string("json", "", "Write the measurements here.")


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(_):
    out = pathlib.Path(FLAGS.out)
    country = out / "aliexpress" / "AliExpress_NL"
    if not (country / "train.csv").is_file():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "benchmarks.make_ecommerce_files", "--format=aliexpress",
                        f"--rows={FLAGS.rows}", f"--out={out}"], check=True)
        print(f"generated {FLAGS.rows:,} rows in {time.perf_counter() - t0:.0f} s", flush=True)
    result = {"rows": FLAGS.rows, "device": jax.devices()[0].device_kind}
    for what in ("first_load_s", "cached_load_s"):
        t0 = time.perf_counter()
        data = md.load("aliexpress", data_dir=str(out), country="NL", cache_dir=str(out / "cache"))
        result[what] = time.perf_counter() - t0
        print(f"{what}: {result[what]:.1f} s, peak RSS {_peak_gib():.1f} GiB", flush=True)
    arrays = sum(a.nbytes for s in data.splits().values() for a in s.as_dict().values())
    result["array_gib"] = arrays / 2**30
    result["train_rows"] = len(data.train)
    model = mm.get("mmoe", num_tasks=2, num_numeric=len(data.numeric_names), vocab_sizes=data.vocab_sizes,
                   embed_dim=128, tower_hidden=(128, 64))
    budget = FLAGS.budget_mb * 2**20 if FLAGS.budget_mb else None
    epochs = []
    t0 = time.perf_counter()
    s = fit(model, mb.get("ew"), data, optimizer=optax.adam(1e-3), epochs=FLAGS.epochs, batch_size=FLAGS.batch_size,
            steps_per_call=200, progress=False, device_memory_budget=budget, eval_batch_size=65536,
            on_epoch=lambda r: epochs.append(time.perf_counter()))
    result.update({
        "streamed": bool(budget and data.train.labels.nbytes + data.train.numeric.nbytes > budget),
        "epoch_s_incl_eval": epochs[0] - t0, "train_s": s["train_seconds"], "step_ms": 1e3 * s["step_seconds"],
        "steps_per_epoch": len(data.train) // FLAGS.batch_size, "peak_rss_gib": _peak_gib(),
        "test_auc": {t: m["auc"] for t, m in s["test"].items()},
    })
    print(json.dumps(result, indent=1))
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    app.run(main)
