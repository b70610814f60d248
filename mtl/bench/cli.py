"""``mtl-bench``: run a benchmark grid and write its tables and figures.

    mtl-bench --bench=census_income --data_dir=../shared/data      # trains what is not finished, then tables
    mtl-bench --bench=synthetic --smoke --workdir=/tmp/bench        # a seconds-long check of the whole path
    mtl-bench --bench=census_income --tables-only                   # re-render from the saved run directories

A benchmark is ``experiments/benchmarks/<name>.py`` (see :mod:`mtl.bench.grid`).
Each cell is an ordinary ``mtl-train`` run directory ``WORKDIR/<group>/<cell>/``
(default ``runs/bench/<name>``): a rerun skips finished cells and resumes
interrupted ones (a cell whose config changed is refused, as ``mtl-train``
refuses it). Tables and figures go to ``OUTDIR/<group>/`` (default
``results/<name>``), aggregated from the run directories, never from memory;
each file is written whole, and a table is never replaced by one with fewer
cells or seeds than it holds unless ``--replace_tables`` says so. The
``Command:`` line above each table is the command that regenerates it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import pathlib
import shlex
import sys
import time

from mtl.bench.grid import Benchmark
from mtl.bench.report import render
from mtl.cli import Flag

BENCH_FLAGS = (
    Flag("bench", None, "experiments/benchmarks/NAME.py, or the path of such a file", "NAME"),
    Flag("smoke", False, "the benchmark's seconds-long variant (tiny data, few cells and seeds)"),
    Flag("workdir", None, "run directories, one per cell (default runs/bench/NAME; smoke: runs/bench/NAME-smoke)",
         "DIR"),
    Flag("outdir", None, "tables and figures (default results/NAME; smoke: WORKDIR/results)", "DIR"),
    Flag("data_dir", None, "sets data.data_dir of every cell (default: the configs' value or $MTL_DATA_DIR)", "DIR"),
    Flag("tables_only", False, "re-render the tables from the saved runs, train nothing (also --tables-only)"),
    Flag("only", "", "train only the cells whose GROUP/CELL name contains TEXT", "TEXT"),
    Flag("replace_tables", False, "replace tables even by ones with fewer cells or seeds than they hold (without "
                                  "it such a replacement is refused and nothing is written)"),
    Flag("compilation_cache", True, "JAX's persistent compilation cache in $MTL_CACHE_DIR/jax (default "
                                    "~/.cache/mtl/jax): a rerun compiles nothing new (--nocompilation_cache: off)"),
)
BENCH_USAGE = ("mtl-bench: train a benchmark grid (models x balancers x seeds) and write its tables and figures.",
               "usage: mtl-bench --bench=NAME [--smoke] [--workdir=DIR] [--outdir=DIR] [--data_dir=DIR] "
               "[--tables-only] [--only=TEXT] [--replace_tables]")


class BenchError(ValueError):
    """A benchmark that cannot run or render as asked, explained in one line."""


def load_bench(name: str, smoke: bool) -> Benchmark:
    """``get_bench(smoke)`` of ``experiments/benchmarks/<name>.py``, or of the file ``name`` when it is a path."""
    root = pathlib.Path(__file__).resolve().parents[2]
    path = pathlib.Path(name)
    if not path.suffix:
        path = root / "experiments" / "benchmarks" / f"{name}.py"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "experiments" / "benchmarks").glob("*.py") if p.stem != "__init__")
        close = difflib.get_close_matches(path.stem, available, n=1)
        raise BenchError(f"--bench={name}: no benchmark file {path}; available: {', '.join(available)}"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
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
              data_dir: str | None = None, tables_only: bool = False, only: str = "",
              replace_tables: bool = False) -> dict:
    """Trains the unfinished cells (unless ``tables_only``) and renders every group's tables and figures.

    Raises :class:`BenchError`, with nothing written, when ``only`` matches no
    cell (before any training), when no cell has a finished run to tabulate,
    and when a table would be replaced by one with fewer cells or seeds than it
    holds (unless ``replace_tables``).
    """
    from mtl.rundir import git_commit

    bench = load_bench(name, smoke)
    stem = pathlib.Path(name).stem
    workdir_given, outdir_given = workdir, outdir
    workdir = pathlib.Path(workdir or f"runs/bench/{stem}{'-smoke' if smoke else ''}")
    outdir = pathlib.Path(outdir or (workdir / "results" if smoke else f"results/{stem}"))
    cells = list(bench.cells())
    todo = [(g, c) for g, c in cells if not only or only in f"{g}/{c.name}"]
    if not todo:
        raise BenchError(f"--only={only} matches no cell of {name}; it selects the cells whose GROUP/CELL contains it, "
                         f"e.g. --only={cells[0][0]}/{cells[0][1].name}; groups: {', '.join(bench.groups)}; cells: "
                         + ", ".join(dict.fromkeys(c.name for _, c in cells)))
    configs = {f"{g}/{c.name}": cell_config(bench, c, data_dir) for g, c in cells}  # every mistake before training
    failures = {} if tables_only else _train(todo, configs, workdir)
    results = _collect(bench, workdir, name, tables_only, failures)
    if not replace_tables:
        _refuse_losses(results, outdir)
    given = {"workdir": workdir_given, "outdir": outdir_given, "data_dir": data_dir}
    command = " ".join(["mtl-bench", f"--bench={shlex.quote(name)}"] + (["--smoke"] if smoke else [])
                       + [f"--{k}={shlex.quote(str(v))}" for k, v in given.items() if v])
    paths = {}
    commit = git_commit()
    for group, found in results.items():
        walls = [json.loads(p.read_text())["wall_seconds"] for p in (workdir / group).glob("*/bench_wall.json")]
        group_configs = {k: v for k, v in configs.items() if k.startswith(f"{group}/")}
        timed = (f"{len(walls)} cells" if len(walls) == len(group_configs)
                 else f"the {len(walls)} of {len(group_configs)} cells trained here")
        header = {"commit": commit, "config_hash": bench_hash(group_configs),
                  "wall_time": f"{_clock(sum(walls))} for {timed} on this machine "
                               f"({'vectorised seeds' if not isinstance(bench.seeds, int) or bench.seeds > 1 else ''})",
                  "command": command}
        title = f"{bench.title} — {group}" if len(bench.groups) > 1 else bench.title
        paths[group] = render(found, outdir / group, title=title, header=header)
    if bench.report is not None:
        paths["report"] = bench.report(workdir, outdir, bench, command=command, replace_tables=replace_tables)
    return {"paths": paths, "failures": failures, "workdir": str(workdir), "outdir": str(outdir)}


def _train(todo, configs: dict, workdir: pathlib.Path) -> dict[str, str]:
    """Trains each unfinished cell of ``todo`` (resuming interrupted ones); returns ``{cell: why}`` of the failed."""
    from mtl.rundir import run_status
    from mtl.train.run import train_and_evaluate

    failures = {}
    t0 = time.perf_counter()
    done_here, spent = 0, 0.0
    for i, (group, cell) in enumerate(todo):
        key = f"{group}/{cell.name}"
        cell_dir = workdir / group / cell.name
        status = run_status(cell_dir)
        left = len(todo) - i
        eta = f", about {_clock(spent / done_here * left)} left" if done_here else ""
        doing = {"finished": "finished, skipped", "absent": "running"}.get(status.state, f"running again ({status})")
        print(f"[{i + 1}/{len(todo)}] {key}: {doing} (done {i}, left {left}, elapsed "
              f"{_clock(time.perf_counter() - t0)}{eta})", flush=True)
        if status.finished:
            continue
        c0 = time.perf_counter()
        try:
            summary = train_and_evaluate(configs[key], cell_dir, progress=False, resolved=True)
        except Exception as e:  # noqa: BLE001 - a failed cell is reported in the table, the grid goes on
            failures[key] = f"{type(e).__name__}: {e}"
            print(f"    failed: {failures[key]}", flush=True)
            continue
        wall = time.perf_counter() - c0
        compiling = summary.get("compile_seconds", 0.0)
        print(f"    done in {_clock(wall)}, {compiling:.1f} s of it compiling", flush=True)
        (cell_dir / "bench_wall.json").write_text(json.dumps({"wall_seconds": wall, "compile_seconds": compiling}))
        done_here += 1
        spent += wall
    return failures


def _collect(bench: Benchmark, workdir: pathlib.Path, name: str, tables_only: bool, failures: dict) -> dict:
    """``{group: GroupResults}`` of the groups with at least one finished cell; a :class:`BenchError`
    saying where the runs were looked for when there is none."""
    from mtl.bench.results import collect

    results = {g: collect(workdir / g) for g in bench.groups if (workdir / g).is_dir()}
    found = {g: r for g, r in results.items() if r.cells}
    if found:
        for g in bench.groups:
            if g not in found:
                print(f"note: no finished run in {workdir / g}: its table is not written", file=sys.stderr)
        return found
    where = (f"{workdir}/<group>/<cell>/summary.json, groups {', '.join(bench.groups)}")
    if not workdir.is_dir():
        why = f"{workdir} does not exist"
    else:
        missing = [m for r in results.values() for m in r.missing]
        why = f"{len(missing)} cell(s) without a finished run" + (f" (e.g. {missing[0]})" if missing else "")
    what = (f"{len(failures)} cell(s) failed, see above" if failures else
            f"train them with mtl-bench --bench={name} (without --tables-only)" if tables_only else "nothing trained")
    raise BenchError(f"no finished runs to tabulate: {why}; runs are expected in {where}; {what}; nothing written")


def _refuse_losses(results: dict, outdir: pathlib.Path) -> None:
    """A :class:`BenchError` when a group's new table would hold fewer cells or seeds than its saved one."""
    from mtl.bench import publish
    from mtl.bench.report import saved_seed_counts

    for group, found in results.items():
        lost = publish.losses(saved_seed_counts(outdir / group), {c.name: len(c.seeds) for c in found.cells})
        if lost:
            raise BenchError(f"{outdir / group / 'table.csv'} holds more than the runs in {found.path} give: "
                             + "; ".join(lost[:3]) + (f"; and {len(lost) - 3} more" if len(lost) > 3 else "")
                             + "; nothing written (--replace_tables replaces it anyway)")


def run(argv=None) -> None:
    """Entry point of ``mtl-bench``."""
    from mtl.cli import HELP_FLAGS, UsageError, error, help_text, parse_flags, quiet_backend_logs
    from mtl.config import ConfigError

    argv = list(sys.argv if argv is None else argv)
    quiet_backend_logs()
    if any(a in HELP_FLAGS for a in argv[1:]):
        print(help_text(BENCH_USAGE, BENCH_FLAGS))
        sys.exit(0)
    try:
        opts = parse_flags(BENCH_FLAGS, argv[1:], "mtl-bench")
    except UsageError as e:
        error(str(e))
    if not opts["bench"]:
        error("--bench=NAME is required (experiments/benchmarks/NAME.py); see mtl-bench --help")
    if opts["compilation_cache"]:
        from mtl.train.compilation import enable_persistent_cache

        enable_persistent_cache()
    try:
        out = run_bench(opts["bench"], smoke=opts["smoke"], workdir=opts["workdir"], outdir=opts["outdir"],
                        data_dir=opts["data_dir"], tables_only=opts["tables_only"], only=opts["only"],
                        replace_tables=opts["replace_tables"])
    except (ConfigError, ValueError, FileNotFoundError) as e:
        error(str(e))
    for paths in out["paths"].values():
        if isinstance(paths, dict) and "md" in paths:
            print(pathlib.Path(paths["md"]).read_text())
    if out["failures"]:
        print(f"{len(out['failures'])} cell(s) failed: " + "; ".join(f"{k}: {v}" for k, v in out["failures"].items()),
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
