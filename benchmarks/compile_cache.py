"""What JAX's persistent compilation cache saves a rerun: compile seconds and programs compiled anew.

    python -m benchmarks.compile_cache                                  # census MMoE + PCGrad, 5 seeds, 2 epochs
    python -m benchmarks.compile_cache --config=experiments/configs/synthetic.py:smoke --data_dir=

Trains the same run three times, each in a fresh process (as a rerun after an
interruption is): (1) with an empty cache directory, (2) again with that cache
(the run directory deleted in between), (3) with ``--nocompilation_cache``.
Prints each run's ``compile_seconds`` and ``compile_cache_misses`` from its
``summary.json`` and the ratio of (2) to (1). ``--json`` writes the rows.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "experiments/configs/census_income.py:group1", "mtl-train --config.")
flags.DEFINE_string("data_dir", "../shared/data", "Sets config.data.data_dir (empty: the config's own).")
flags.DEFINE_string("overrides", "balancer.name=pcgrad,seeds=5,epochs=2",
                    "Comma-separated KEY=VALUE config overrides (a value may not contain a comma).")
flags.DEFINE_string("json", "", "Write the rows here.")


def train(workdir: pathlib.Path, cache: pathlib.Path | None) -> dict:
    argv = [sys.executable, "-m", "mtl.train", f"--config={FLAGS.config}", f"--workdir={workdir}", "--noprogress"]
    argv += [f"--config.{kv}" for kv in FLAGS.overrides.split(",") if kv]
    if FLAGS.data_dir:
        argv.append(f"--config.data.data_dir={FLAGS.data_dir}")
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache is None:
        argv.append("--nocompilation_cache")
    else:
        env["MTL_CACHE_DIR"] = str(cache)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    summary = json.loads((workdir / "summary.json").read_text())
    return {"wall_seconds": wall, "compile_seconds": summary["compile_seconds"],
            "compile_cache_misses": summary.get("compile_cache_misses")}


def main(_):
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        cache = tmp / "cache"
        for name, c in (("empty cache", cache), ("warm cache", cache), ("no cache", None)):
            run = tmp / "run"
            shutil.rmtree(run, ignore_errors=True)
            rows[name] = train(run, c)
    print(f"mtl-train --config={FLAGS.config} {FLAGS.overrides}, each run in a fresh process")
    for name, r in rows.items():
        misses = r["compile_cache_misses"] if name != "no cache" else "-"
        print(f"{name:12s} compile {r['compile_seconds']:7.2f} s  persistent-cache misses (programs compiled "
              f"and written to it) {misses!s:>4s}  whole run {r['wall_seconds']:7.2f} s")
    cold, warm = rows["empty cache"], rows["warm cache"]
    print(f"warm / empty cache: compile {warm['compile_seconds'] / cold['compile_seconds']:.2f}x, "
          f"whole run {warm['wall_seconds'] / cold['wall_seconds']:.2f}x")
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(json.dumps({"config": FLAGS.config, "overrides": FLAGS.overrides,
                                                        "rows": rows}, indent=1))


if __name__ == "__main__":
    app.run(main)
