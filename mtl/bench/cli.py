"""``mtl-bench``: run a benchmark grid and write its tables and figures.

    mtl-bench --bench=census_income --data_dir=../shared/data      # trains what is not finished, then tables
    mtl-bench --bench=synthetic --smoke --workdir=/tmp/bench        # a seconds-long check of the whole path
    mtl-bench --bench=census_income --tables-only                   # re-render from the saved run directories

A benchmark is ``experiments/benchmarks/<name>.py`` (see :mod:`mtl.bench.grid`).
Each cell is an ordinary ``mtl-train`` run directory ``WORKDIR/<group>/<cell>/``
(default ``runs/bench/<name>``): a rerun skips finished cells and resumes
interrupted ones (a cell whose config changed is refused, as ``mtl-train``
refuses it). Tables and figures go to ``OUTDIR/<group>/`` (default
``results/<name>``), aggregated from the run directories, never from memory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pathlib
import sys
import time

USAGE = """\
mtl-bench: train a benchmark grid (models x balancers x seeds) and write its tables and figures.

usage: mtl-bench --bench=NAME [--smoke] [--workdir=DIR] [--outdir=DIR] [--data_dir=DIR] [--tables-only] [--only=TEXT]

  --bench=NAME      experiments/benchmarks/NAME.py (or a path to such a file)
  --smoke           the benchmark's seconds-long variant (tiny data, few cells and seeds)
  --workdir=DIR     run directories, one per cell (default runs/bench/NAME; smoke: runs/bench/NAME-smoke)
  --outdir=DIR      tables and figures (default results/NAME; smoke: WORKDIR/results)
  --data_dir=DIR    sets data.data_dir of every cell (default: the configs' value or $MTL_DATA_DIR)
  --tables-only     re-render the tables from the saved runs, train nothing
  --only=TEXT       train only cells whose group/cell name contains TEXT
"""


def load_bench(name: str, smoke: bool):
    root = pathlib.Path(__file__).resolve().parents[2]
    path = pathlib.Path(name)
    if not path.suffix:
        path = root / "experiments" / "benchmarks" / f"{name}.py"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "experiments" / "benchmarks").glob("*.py") if p.stem != "__init__")
        raise ValueError(f"--bench={name}: no benchmark file {path}; available: {', '.join(available)}")
    for p in (str(root), str(pathlib.Path.cwd())):
        if p not in sys.path:
            sys.path.insert(0, p)
    spec = importlib.util.spec_from_file_location(f"_mtl_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_bench(smoke)


def cell_config(bench, cell, data_dir: str | None):
    """The resolved, validated config of a cell (what ``mtl-train`` would run)."""
    from mtl.config import load_config_file, resolve, validate

    overrides = {**bench.common, **cell.overrides}
    seeds = bench.seeds if isinstance(bench.seeds, int) else ",".join(map(str, bench.seeds))
    overrides.setdefault("seeds", seeds)
    if data_dir:
        overrides["data.data_dir"] = data_dir
    config = resolve(load_config_file(cell.config), [(k, _text(v)) for k, v in overrides.items()])
    validate(config)
    return config


def _text(v) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return str(v)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def bench_hash(configs: dict) -> str:
    from mtl.config import plain as _plain

    blob = json.dumps({k: _plain(v) for k, v in sorted(configs.items())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_bench(name: str, *, smoke: bool = False, workdir: str | None = None, outdir: str | None = None,
              data_dir: str | None = None, tables_only: bool = False, only: str = "") -> dict:
    """Trains the unfinished cells (unless ``tables_only``) and renders every group's tables and figures."""
    from mtl.bench.report import render
    from mtl.rundir import git_commit
    from mtl.train.run import train_and_evaluate

    bench = load_bench(name, smoke)
    stem = pathlib.Path(name).stem
    workdir = pathlib.Path(workdir or f"runs/bench/{stem}{'-smoke' if smoke else ''}")
    outdir = pathlib.Path(outdir or (workdir / "results" if smoke else f"results/{stem}"))
    cells = list(bench.cells())
    configs = {f"{g}/{c.name}": cell_config(bench, c, data_dir) for g, c in cells}  # every mistake before training
    failures = {}
    if not tables_only:
        t0 = time.perf_counter()
        todo = [(g, c) for g, c in cells if not only or only in f"{g}/{c.name}"]
        done_here, spent = 0, 0.0
        for i, (group, cell) in enumerate(todo):
            key = f"{group}/{cell.name}"
            cell_dir = workdir / group / cell.name
            finished = _finished(cell_dir)
            left = len(todo) - i
            eta = f", about {_clock(spent / done_here * left)} left" if done_here else ""
            print(f"[{i + 1}/{len(todo)}] {key}: {'finished, skipped' if finished else 'running'} "
                  f"(done {i}, left {left}, elapsed {_clock(time.perf_counter() - t0)}{eta})", flush=True)
            if finished:
                continue
            c0 = time.perf_counter()
            try:
                train_and_evaluate(configs[key], cell_dir, progress=False, resolved=True)
            except Exception as e:  # noqa: BLE001 - a failed cell is reported in the table, the grid goes on
                failures[key] = f"{type(e).__name__}: {e}"
                print(f"    failed: {failures[key]}", flush=True)
                continue
            wall = time.perf_counter() - c0
            (cell_dir / "bench_wall.json").write_text(json.dumps({"wall_seconds": wall}))
            done_here += 1
            spent += wall
    paths = {}
    commit = git_commit()
    for group in bench.groups:
        gdir = workdir / group
        if not gdir.is_dir():
            continue
        walls = [json.loads(p.read_text())["wall_seconds"] for p in gdir.glob("*/bench_wall.json")]
        group_configs = {k: v for k, v in configs.items() if k.startswith(f"{group}/")}
        timed = (f"{len(walls)} cells" if len(walls) == len(group_configs)
                 else f"the {len(walls)} of {len(group_configs)} cells trained here")
        header = {"commit": commit, "config_hash": bench_hash(group_configs),
                  "wall_time": f"{_clock(sum(walls))} for {timed} on this machine "
                               f"({'vectorised seeds' if not isinstance(bench.seeds, int) or bench.seeds > 1 else ''})",
                  "command": f"mtl-bench --bench={stem}{' --smoke' if smoke else ''}"}
        title = f"{bench.title} — {group}" if len(bench.groups) > 1 else bench.title
        paths[group] = render(gdir, outdir / group, title=title, header=header)
    if bench.report is not None:
        paths["report"] = bench.report(workdir, outdir, bench)
    return {"paths": paths, "failures": failures, "workdir": str(workdir), "outdir": str(outdir)}


def _finished(cell_dir: pathlib.Path) -> bool:
    path = cell_dir / "summary.json"
    if not path.is_file():
        return False
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return "error" not in s and "interrupted" not in s and ("test" in s or "test_mean" in s)


def run(argv=None) -> None:
    """Entry point of ``mtl-bench``."""
    from mtl.cli import quiet_backend_logs
    from mtl.config import ConfigError

    argv = list(sys.argv if argv is None else argv)
    quiet_backend_logs()
    opts = {"bench": None, "smoke": False, "workdir": None, "outdir": None, "data_dir": None, "tables-only": False,
            "only": ""}
    for a in argv[1:]:
        if a in ("--help", "-h", "--helpshort"):
            print(USAGE)
            sys.exit(0)
        key, eq, value = a.lstrip("-").partition("=")
        key = key.replace("_", "-") if key in ("tables_only",) else key
        if key in ("bench", "workdir", "outdir", "data_dir", "only") and eq:
            opts[key] = value
        elif key in ("smoke", "tables-only") and not eq:
            opts[key] = True
        else:
            print(f"error: unknown argument {a!r}; see mtl-bench --help", file=sys.stderr)
            sys.exit(2)
    if not opts["bench"]:
        print("error: --bench=NAME is required (experiments/benchmarks/NAME.py); see mtl-bench --help",
              file=sys.stderr)
        sys.exit(2)
    try:
        out = run_bench(opts["bench"], smoke=opts["smoke"], workdir=opts["workdir"], outdir=opts["outdir"],
                        data_dir=opts["data_dir"], tables_only=opts["tables-only"], only=opts["only"])
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for group, paths in out["paths"].items():
        if isinstance(paths, dict) and "md" in paths:
            print(pathlib.Path(paths["md"]).read_text())
    if out["failures"]:
        print(f"{len(out['failures'])} cell(s) failed: " + "; ".join(f"{k}: {v}" for k, v in out["failures"].items()),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
