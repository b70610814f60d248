"""Same configs, two checkouts: are the run files identical?

    python -m benchmarks.engine_parity --base=/work/wt/engine-base --new=. --out=/tmp/parity
    python -m benchmarks.engine_parity --base=/work/wt/engine-base --new=. --cells=smoke,sdmgrad --reuse_base

Runs every cell (a config and its overrides, :data:`CELLS`) with
``python -m mtl.train`` once with ``PYTHONPATH=<base>`` and once with
``PYTHONPATH=<new>``, each from its own checkout, into ``<out>/base/<cell>`` and
``<out>/new/<cell>``, then compares every ``summary.json``, ``metrics.jsonl``,
``steps.jsonl`` and ``config.json`` of the two run directories value for value
(floats exactly, NaN equal to NaN, keys in the same order), ignoring the wall-time and commit fields
(:data:`IGNORED`). Prints one line per cell and exits with status 1 when any
cell differs. ``--reuse_base`` keeps base run directories that already hold a
``summary.json`` (the base checkout does not change between calls).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("base", None, "The reference checkout (its root folder).")
flags.DEFINE_string("new", ".", "The checkout under test.")
flags.DEFINE_string("out", "/tmp/engine_parity", "Where the run directories go.")
flags.DEFINE_string("data_dir", "../shared/data", "The data folder (relative to --new), for the census cells.")
flags.DEFINE_list("cells", [], "Cells to run (default: all of CELLS).")
flags.DEFINE_bool("reuse_base", False, "Keep finished base run directories instead of rerunning them.")

SYNTHETIC = "experiments/configs/synthetic.py:smoke"
CENSUS = "experiments/configs/census_income.py:smoke,test_split"

# name -> (config, overrides); {data_dir} is filled in. Each cell exercises a path of the engine.
CELLS: dict[str, tuple[str, list[str]]] = {
    "smoke": (SYNTHETIC, []),
    "seeds_pcgrad_padded": (SYNTHETIC, ["--config.epochs=3", "--config.seeds=2", "--config.balancer.name=pcgrad",
                                        "--config.steps_per_call=4", "--config.diagnostics=step"]),
    "seeds_data_per_seed": (SYNTHETIC, ["--config.seeds=2", "--config.data_per_seed=True",
                                        "--config.balancer.name=uw"]),
    "early_stopping": (SYNTHETIC, ["--config.epochs=8", "--config.patience=1", "--config.learning_rate=0.03"]),
    "rep_grad": (SYNTHETIC, ["--config.balancer.name=mgda", "--config.balancer.rep_grad=True"]),
    "sdmgrad_k_batches": (SYNTHETIC, ["--config.balancer.name=sdmgrad", "--config.steps_per_call=4"]),
    "census": (CENSUS, ["--config.epochs=2", "--config.data.data_dir={data_dir}"]),
    "census_streamed": (CENSUS, ["--config.epochs=2", "--config.data.data_dir={data_dir}",
                                 "--config.device_memory_budget_mb=1", "--config.seeds=2",
                                 "--config.steps_per_call=5"]),
}
IGNORED = frozenset({"train_seconds", "step_seconds", "seconds", "commit", "compile_seconds", "compile_cache_misses"})
COMPARED = ("summary.json", "metrics.jsonl", "steps.jsonl", "config.json")


def run_cell(checkout: pathlib.Path, config: str, overrides: list[str], workdir: pathlib.Path) -> None:
    if workdir.exists():
        shutil.rmtree(workdir)
    cmd = [sys.executable, "-m", "mtl.train", f"--config={config}", f"--workdir={workdir}", "--noprogress",
           *overrides]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} (in {checkout}) failed with status {done.returncode}:\n"
                         f"{done.stderr[-2000:]}")


def strip(x):
    """``x`` without the ignored keys, at any depth."""
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in IGNORED}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def differences(a, b, where: str = "") -> list[str]:
    """Where two JSON values differ (exact floats; NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        if not out and list(a) != list(b):
            out.append(f"{where}: keys in another order")
        for k in a.keys() & b.keys():
            out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if (type(a) is type(b) and a == b) else [f"{where}: {a!r} vs {b!r}"]


def load(path: pathlib.Path):
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def compare(base: pathlib.Path, new: pathlib.Path) -> tuple[int, list[str]]:
    """(files compared, differences) over the run files of two run directories."""
    files = sorted({p.relative_to(base) for name in COMPARED for p in base.rglob(name)} |
                   {p.relative_to(new) for name in COMPARED for p in new.rglob(name)})
    diffs = []
    for rel in files:
        if not (base / rel).exists() or not (new / rel).exists():
            diffs.append(f"{rel}: missing in {'base' if not (base / rel).exists() else 'new'}")
            continue
        diffs += [f"{rel}{d}" for d in differences(strip(load(base / rel)), strip(load(new / rel)))]
    return len(files), diffs


def main(argv):
    del argv
    if not FLAGS.base:
        raise app.UsageError("--base=PATH (the reference checkout) is required")
    base, new = pathlib.Path(FLAGS.base).absolute(), pathlib.Path(FLAGS.new).absolute()
    out = pathlib.Path(FLAGS.out).absolute()
    data_dir = str((new / FLAGS.data_dir).resolve())
    unknown = [c for c in FLAGS.cells if c not in CELLS]
    if unknown:
        raise app.UsageError(f"--cells: unknown {unknown}; known: {', '.join(CELLS)}")
    failed = 0
    for name in FLAGS.cells or CELLS:
        config, overrides = CELLS[name]
        overrides = [o.format(data_dir=data_dir) for o in overrides]
        base_dir, new_dir = out / "base" / name, out / "new" / name
        if not (FLAGS.reuse_base and (base_dir / "summary.json").exists()):
            run_cell(base, config, overrides, base_dir)
        run_cell(new, config, overrides, new_dir)
        count, diffs = compare(base_dir, new_dir)
        failed += bool(diffs)
        print(f"{name:22s} {'identical' if not diffs else 'DIFFERENT'} ({count} files; "
              f"python -m mtl.train --config={config} {' '.join(overrides)})", flush=True)
        for d in diffs[:20]:
            print(f"    {d}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    app.run(main)
