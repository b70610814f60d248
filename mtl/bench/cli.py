"""``mtl-bench``: run a benchmark grid and write its tables and figures.

    mtl-bench --bench=census_income --data_dir=../shared/data      # trains what is not finished, then tables
    mtl-bench --bench=synthetic --smoke --workdir=/tmp/bench        # a seconds-long check of the whole path
    mtl-bench --bench=census_income --tables-only                   # re-render from the saved run directories
    mtl-bench --bench=census_income --data_dir=../shared/data --workers=2   # two cells at a time, a core each

A benchmark is ``experiments/benchmarks/<name>.py`` (see :mod:`mtl.bench.grid`).
Each cell is an ordinary ``mtl-train`` run directory ``WORKDIR/<group>/<cell>/``
(default ``runs/bench/<name>``): a rerun skips finished cells and resumes
interrupted ones (a cell whose config changed is refused, as ``mtl-train``
refuses it). A tuned cell (``CellSpec.tune``) is a directory of runs instead:
``WORKDIR/<group>/<cell>/<point>/`` per grid point (the benchmark's ``tune_seeds``)
and ``WORKDIR/<group>/<cell>/final/<point>/`` for the chosen point trained with
the final seeds (:mod:`mtl.bench.tuning`); all of them resume the same way.
Tables and figures go to ``OUTDIR/<group>/`` (default ``results/<name>``),
aggregated from the run directories, never from memory; each file is written
whole, and a table is never replaced by one with fewer cells or seeds than it
holds unless ``--replace_tables`` says so. The ``Command:`` line above each
table is the command that regenerates it.

``--workers=N`` trains N cells at a time in N processes, each pinned to its
share of the CPU cores (independent cells scale with the cores: the census grid
ran 1.95x faster on two workers than cell by cell on one core). A process claims a run directory with an
advisory lock (``.<run>.lock`` beside it, released by the OS when the process
dies), so each run is trained once and a crashed worker's run is resumed by the
next invocation; a tuned cell's final runs wait until its grid is trained.
A run gives the same numbers whichever worker trains it, as long as the cores
each process gets are the same (a run's float rounding on XLA:CPU may depend on
its thread count).
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import hashlib
import importlib.util
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from mtl.bench.grid import Benchmark
from mtl.bench.report import render
from mtl.bench.tuning import FINAL
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
    Flag("workers", "1", "train N cells at a time, in N processes pinned to a share of the CPU cores each "
                         "(0: one per core); each run is trained by one of them", "N"),
    Flag("train_only", False, "train the unfinished cells, write no table (what each process of --workers does)"),
    Flag("compilation_cache", True, "JAX's persistent compilation cache in $MTL_CACHE_DIR/jax (default "
                                    "~/.cache/mtl/jax): a rerun compiles nothing new (--nocompilation_cache: off)"),
)
BENCH_USAGE = ("mtl-bench: train a benchmark grid (models x balancers x seeds) and write its tables and figures.",
               "usage: mtl-bench --bench=NAME [--smoke] [--workdir=DIR] [--outdir=DIR] [--data_dir=DIR] "
               "[--tables-only] [--only=TEXT] [--replace_tables] [--workers=N]")


#: A worker of ``--workers`` pins itself to these cores (comma-separated) before jax starts.
CORES_ENV = "MTL_BENCH_CORES"


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


def cell_config(bench, cell, data_dir: str | None, values=None, seeds=None):
    """The resolved, validated config of a cell (what ``mtl-train`` would run), at the hyperparameter
    point ``values`` (``{config path: value}``) and with ``seeds`` when given."""
    from mtl.config import load_config_file, resolve, validate

    overrides = {**bench.common, **cell.overrides, **(values or {})}
    overrides.setdefault("seeds", _text(bench.seeds))
    if seeds is not None:
        overrides["seeds"] = _text(seeds)
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
              replace_tables: bool = False, workers: int = 1, train_only: bool = False,
              compilation_cache: bool = True) -> dict:
    """Trains the unfinished cells (unless ``tables_only``) and renders every group's tables and figures
    (unless ``train_only``). ``workers`` > 1 trains in that many processes side by side, each pinned to
    its share of the CPU cores (0: one per core); ``compilation_cache`` is passed on to them.

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
    configs = _configs(bench, cells, data_dir)  # every mistake before training
    failures = {}
    if not tables_only and workers != 1:
        flags = {"bench": name, "smoke": smoke, "workdir": str(workdir), "data_dir": data_dir, "only": only,
                 "compilation_cache": compilation_cache}
        failures = _spawn_workers(workers, flags, workdir)
    elif not tables_only:
        plain = [(g, c) for g, c in todo if not (c.tune or c.tune_from)]
        failures = _run_jobs([(f"{g}/{c.name}", workdir / g / c.name, configs[f"{g}/{c.name}"]) for g, c in plain])
        failures.update(_tune_and_train(bench, [(g, c) for g, c in todo if (g, c) not in plain], workdir, data_dir))
    if train_only:
        return {"paths": {}, "failures": failures, "workdir": str(workdir), "outdir": str(outdir)}
    results = _collect(bench, workdir, name, tables_only, failures)
    if not replace_tables:
        _refuse_losses(results, outdir)
    given = {"workdir": workdir_given, "outdir": outdir_given, "data_dir": data_dir}
    command = " ".join(["mtl-bench", f"--bench={shlex.quote(name)}"] + (["--smoke"] if smoke else [])
                       + [f"--{k}={shlex.quote(str(v))}" for k, v in given.items() if v])
    paths = {}
    commit = git_commit()
    for group, found in results.items():
        walls = [json.loads(p.read_text())["wall_seconds"] for p in (workdir / group).rglob("bench_wall.json")]
        group_configs = {k: v for k, v in configs.items() if k.startswith(f"{group}/")}
        tuned = any(c.tune or c.tune_from for g, c in cells if g == group)
        timed = (f"the {len(walls)} runs trained here (grid points and final runs)" if tuned else
                 f"{len(walls)} cells" if len(walls) == len(group_configs)
                 else f"the {len(walls)} of {len(group_configs)} cells trained here")
        header = {"commit": commit, "config_hash": bench_hash(group_configs),
                  "wall_time": f"{_clock(sum(walls))} for {timed} on this machine "
                               f"({'vectorised seeds' if not isinstance(bench.seeds, int) or bench.seeds > 1 else ''})"
                               + _elapsed_note(workdir),
                  "command": command}
        if tuned:
            header["tuning"] = (f"{bench.tuning + '; ' if bench.tuning else ''}selection seeds "
                                f"{_text(bench.tune_seeds if bench.tune_seeds is not None else bench.seeds)}, "
                                f"final seeds {_text(bench.seeds)} (a count N means seeds 0..N-1)")
        title = f"{bench.title} — {group}" if len(bench.groups) > 1 else bench.title
        paths[group] = render(found, outdir / group, title=title, header=header, metrics=_metrics(bench, found))
    if bench.report is not None:
        paths["report"] = bench.report(workdir, outdir, bench, command=command, replace_tables=replace_tables)
    return {"paths": paths, "failures": failures, "workdir": str(workdir), "outdir": str(outdir)}


def _configs(bench: Benchmark, cells, data_dir: str | None) -> dict:
    """``{GROUP/CELL: config}`` of the untuned cells and ``{GROUP/CELL/POINT: config}`` of every grid point;
    a ``tune_from`` naming no tuned cell of its group is a :class:`BenchError`."""
    from mtl.bench.tuning import points
    from mtl.rundir import point_name

    configs = {}
    for g, c in cells:
        if c.tune_from:
            src = next((x for x in bench.groups[g] if x.name == c.tune_from), None)
            if src is None or not src.tune:
                raise BenchError(f"cell {g}/{c.name}: tune_from={c.tune_from!r} names no tuned cell of group {g}")
            first = {k: v[0] for k, v in src.tune.items() if not k.startswith("balancer.hparams.")}
            if not first:
                raise BenchError(f"cell {g}/{c.name}: tune_from={c.tune_from!r} tunes only balancer hyperparameters, "
                                 "which do not carry over to another balancer")
            configs[f"{g}/{c.name}"] = cell_config(bench, c, data_dir, first, bench.seeds)  # checked at a grid point
        elif c.tune:
            seeds = bench.tune_seeds if bench.tune_seeds is not None else bench.seeds
            for values in points(c.tune):
                configs[f"{g}/{c.name}/{point_name(values)}"] = cell_config(bench, c, data_dir, values, seeds)
        else:
            configs[f"{g}/{c.name}"] = cell_config(bench, c, data_dir)
    return configs


def train_points(bench: Benchmark, group: str, cell, values: Sequence[dict], seeds, base: pathlib.Path,
                 data_dir: str | None) -> dict[str, str]:
    """Trains the hyperparameter points ``values`` of ``cell`` with ``seeds``, each as an ordinary run
    directory ``base/<point_name>/`` (finished ones skipped, interrupted ones resumed); returns
    ``{run: why}`` of the failed. A grid whose keys can all be swept (:func:`mtl.config.sweep_axes`:
    learning rate, weight decay, float balancer hyperparameters) trains as one sweep, all its points
    and seeds side by side in one program (:func:`mtl.train.run.train_sweep`) writing the same
    directories; other grids train point by point."""
    from mtl.config import ConfigError
    from mtl.rundir import point_name

    where = f"{group}/{cell.name}" + (f"/{FINAL}" if base.name == FINAL else "")
    sweep = _as_sweep(values)
    if sweep:
        try:
            config = cell_config(bench, cell, data_dir, {f"sweep.{k}": v for k, v in sweep.items()}, seeds)
        except ConfigError as e:
            print(f"    note: {where} trains point by point, not as one sweep ({e})", flush=True)
        else:
            return _run_jobs([(f"{where} (sweep of {len(values)} points)", base, config)])
    jobs = [(f"{where}/{point_name(v)}", base / point_name(v), cell_config(bench, cell, data_dir, v, seeds))
            for v in values]
    return _run_jobs(jobs)


def _as_sweep(values: Sequence[dict]) -> dict[str, list] | None:
    """``{key: values}`` when the points are the full Cartesian product of numeric values per key
    (what a sweep trains), else None (a single point needs no sweep)."""
    import math

    if len(values) < 2:
        return None
    axes = {k: list(dict.fromkeys(v[k] for v in values)) for k in values[0]}
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for a in axes.values() for x in a)
    full = len(values) == math.prod(map(len, axes.values())) and all(v.keys() == axes.keys() for v in values)
    return axes if numeric and full else None


def _tune_and_train(bench: Benchmark, todo, workdir: pathlib.Path, data_dir: str | None) -> dict[str, str]:
    """The tuned cells of ``todo``: every grid point with the tuning seeds, then each cell's chosen point
    (its own, or its ``tune_from`` cell's) with the final seeds."""
    from mtl.bench.tuning import points
    from mtl.rundir import point_name

    failures = {}
    seeds = bench.tune_seeds if bench.tune_seeds is not None else bench.seeds
    for g, c in todo:
        if c.tune:
            failures.update(train_points(bench, g, c, points(c.tune), seeds, workdir / g / c.name, data_dir))
    for g, c in todo:
        source = _source(bench, g, c)
        grid = workdir / g / source.name
        for run in [grid, *(grid / point_name(v) for v in points(source.tune))]:
            with _claim(run, wait=True):  # another process may still train the grid the choice reads
                pass
        choice, _ = _choice(bench, g, c, workdir)
        if choice is None:
            failures[f"{g}/{c.name}"] = "no grid point finished: nothing to choose"
        elif bench.tune_seeds is not None or c.tune_from:
            failures.update(train_points(bench, g, c, [choice], bench.seeds, workdir / g / c.name / FINAL, data_dir))
    return failures


def _source(bench: Benchmark, group: str, cell):
    """The cell whose grid chooses ``cell``'s values: its ``tune_from`` cell, else itself."""
    return next(x for x in bench.groups[group] if x.name == cell.tune_from) if cell.tune_from else cell


def _choice(bench: Benchmark, group: str, cell, workdir: pathlib.Path):
    """``(chosen values, Tuning)`` of a tuned or ``tune_from`` cell, read from its runs (``(None, Tuning)``
    when no grid point finished). A ``tune_from`` cell takes its source's values except balancer hparams."""
    import dataclasses

    from mtl.bench.tuning import tune

    source = _source(bench, group, cell)
    seeds = bench.tune_seeds if bench.tune_seeds is not None else bench.seeds
    t = tune(workdir / group / source.name, source.tune, _seed_list(seeds))
    if t.chosen is None:
        return None, t
    if cell.tune_from:
        chosen = {k: v for k, v in t.chosen.items() if not k.startswith("balancer.hparams.")}
        grid = {k: v for k, v in t.grid.items() if k in chosen}
        t = dataclasses.replace(t, grid=grid, chosen=chosen, edge=[k for k in t.edge if k in chosen],
                                source=source.name)
    return t.chosen, t


def _spawn_workers(workers: int, flags: dict, workdir: pathlib.Path) -> dict[str, str]:
    """Runs ``mtl-bench --train_only`` with ``flags`` in ``workers`` processes (0: one per core), each
    pinned to its share of this process's CPU cores; waits for all; returns ``{worker: why}`` of those
    that failed. When they trained anything, the elapsed time is added to ``WORKDIR/bench_elapsed.json``."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    n = workers if workers > 0 else max(len(cores), 1)
    shares = [cores[i::n] or [cores[i % len(cores)]] for i in range(n)] if cores else [[] for _ in range(n)]
    argv = [sys.executable, "-m", "mtl.bench.cli", "--train_only"]
    argv += [f"--{k}={v}" for k, v in flags.items() if v and not isinstance(v, bool)]
    argv += [f"--{'' if v else 'no'}{k}" for k, v in flags.items() if isinstance(v, bool)]
    started = time.time()  # a run trained now writes (or, a grown sweep, rewrites) its bench_wall.json
    print(f"{n} workers, on cores " + " | ".join(",".join(map(str, c)) or "any" for c in shares), flush=True)
    t0 = time.perf_counter()
    procs, stopped = [], []

    def forward(signum, frame):  # SIGTERM to this process: each worker checkpoints and stops, as mtl-train does
        stopped.append(signum)
        for proc in procs:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        for share in shares:  # the child pins itself before jax starts (a preexec_fn would fork this threaded process)
            env = {**os.environ, CORES_ENV: ",".join(map(str, share))} if share else None
            procs.append(subprocess.Popen(argv, env=env))
        codes = [_wait(proc) for proc in procs]
    except KeyboardInterrupt:  # the workers got the same SIGINT from the terminal: let them checkpoint
        for proc in procs:
            _wait(proc)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if stopped:
        raise SystemExit(f"mtl-bench stopped by signal {stopped[0]}: each worker stopped after its current compiled "
                         "call, writing its run's checkpoint where checkpointing is on; the same command resumes")
    failures = {f"worker {i} (cores {shares[i]})": f"exited with status {c}, see its output above"
                for i, c in enumerate(codes) if c != 0}
    elapsed = time.perf_counter() - t0
    trained = sum(p.stat().st_mtime >= started for p in workdir.rglob("bench_wall.json"))
    if trained:
        path = workdir / "bench_elapsed.json"
        log = json.loads(path.read_text()) if path.is_file() else []
        log.append({"seconds": elapsed, "workers": n, "runs_trained": trained})
        path.write_text(json.dumps(log))
    print(f"{n} workers trained {trained} run(s) in {_clock(elapsed)}", flush=True)
    return failures


def _wait(proc: subprocess.Popen) -> int:
    """``proc.wait()``, resumed after a second Ctrl-C (the worker is still writing its checkpoint)."""
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def _elapsed_note(workdir: pathlib.Path) -> str:
    """``; elapsed ...`` of the invocations that trained with ``--workers`` (none: empty)."""
    path = workdir / "bench_elapsed.json"
    if not path.is_file():
        return ""
    log = json.loads(path.read_text())
    return (f"; elapsed {_clock(sum(e['seconds'] for e in log))} over the {len(log)} invocation"
            f"{'s' if len(log) > 1 else ''} that trained with "
            f"{'/'.join(sorted({str(e['workers']) for e in log}))} worker processes side by side "
            f"({sum(e['runs_trained'] for e in log)} runs)")


@contextlib.contextmanager
def _claim(run_dir: pathlib.Path, wait: bool = False):
    """Yields whether this process holds ``run_dir``'s advisory lock (``.<name>.lock`` beside it);
    ``wait`` blocks until it does. The OS releases it when the process ends, however it ends."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f".{run_dir.name}.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _seed_list(seeds) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def _run_jobs(jobs) -> dict[str, str]:
    """Trains each unfinished run of ``jobs`` (``(name, run_dir, config)``; interrupted ones resume);
    returns ``{name: why}`` of the failed."""
    from mtl.config import sweep_points
    from mtl.rundir import point_name, run_status
    from mtl.train.run import train_and_evaluate

    def finished(cell_dir, config) -> bool:  # a sweep: each of its points (a grown grid's summary lacks the new)
        runs = [cell_dir / point_name(p) for p in sweep_points(config)] or [cell_dir]
        return all(run_status(run).finished for run in runs)

    failures = {}
    t0 = time.perf_counter()
    done_here, spent = 0, 0.0
    for i, (key, cell_dir, config) in enumerate(jobs):
        left = len(jobs) - i
        eta = f", about {_clock(spent / done_here * left)} left" if done_here else ""

        def say(doing: str) -> None:
            print(f"[{i + 1}/{len(jobs)}] {key}: {doing} (done {i}, left {left}, elapsed "
                  f"{_clock(time.perf_counter() - t0)}{eta})", flush=True)

        if finished(cell_dir, config):
            say("finished, skipped")
            continue
        with _claim(cell_dir) as mine:
            status = run_status(cell_dir)
            if not mine or finished(cell_dir, config):  # after the claim: another process may have finished it
                say("another process is training it, skipped" if not mine else "finished, skipped")
                continue
            say("running its new sweep points" if status.finished else
                {"absent": "running"}.get(status.state, f"running again ({status})"))
            c0 = time.perf_counter()
            try:
                summary = train_and_evaluate(config, cell_dir, progress=False, resolved=True)
            except Exception as e:  # noqa: BLE001 - a failed cell is reported in the table, the grid goes on
                failures[key] = f"{type(e).__name__}: {e}"
                print(f"    failed: {failures[key]}", flush=True)
                continue
        wall = time.perf_counter() - c0
        compiling = summary.get("compile_seconds", 0.0)
        print(f"    done in {_clock(wall)}, {compiling:.1f} s of it compiling", flush=True)
        wall_file = cell_dir / "bench_wall.json"
        spent_before = json.loads(wall_file.read_text()) if status.finished and wall_file.is_file() else {}
        wall_file.write_text(json.dumps({  # a grown sweep: its earlier points' time too
            "wall_seconds": wall + spent_before.get("wall_seconds", 0.0),
            "compile_seconds": compiling + spent_before.get("compile_seconds", 0.0)}))
        done_here += 1
        spent += wall
    return failures


def _collect(bench: Benchmark, workdir: pathlib.Path, name: str, tables_only: bool, failures: dict) -> dict:
    """``{group: GroupResults}`` of the groups with at least one finished cell; a :class:`BenchError`
    saying where the runs were looked for when there is none."""
    from mtl.bench.results import collect

    results = {g: collect(workdir / g) for g in bench.groups if (workdir / g).is_dir()}
    for g, r in results.items():
        _add_tuned(bench, g, r, workdir)
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


def _add_tuned(bench: Benchmark, group: str, results, workdir: pathlib.Path) -> None:
    """Adds the group's tuned cells to ``results`` (a ``GroupResults``): each the run of its chosen point with
    the final seeds, carrying its ``Tuning``; what is not there yet goes to ``results.missing``."""
    from mtl.bench.results import Missing, _read_cell, sort_cells
    from mtl.bench.tuning import final_dir

    for c in bench.groups[group]:
        if not (c.tune or c.tune_from):
            continue
        choice, t = _choice(bench, group, c, workdir)
        if choice is None:
            results.missing.append(Missing(c.name, None, "no grid point finished"))
            continue
        run = final_dir(workdir / group / c.name, choice) if bench.tune_seeds is not None or c.tune_from else \
            next(p.path for p in t.points if p.values == choice)
        cell, missing = _read_cell(run)
        results.missing += [Missing(f"{c.name}/{run.relative_to(workdir / group / c.name)}", m.seed, m.reason)
                            for m in missing]
        if cell is not None:
            cell.name, cell.tuning = c.name, t
            results.cells.append(cell)
    results.cells[:] = sort_cells(results.cells)


def _metrics(bench: Benchmark, found):
    """The table's columns: ``bench.metrics`` of each binary task, MSE of each regression task (None: the default)."""
    from mtl.bench.results import default_metrics, metric_spec

    if not bench.metrics:
        return None
    return [metric_spec(m.task, k) for m in default_metrics(found.cells)
            for k in (bench.metrics if m.metric == "auc" else (m.metric,))]


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


def _workers(text: str) -> int:
    from mtl.cli import error

    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        error(f"--workers={text}: expected a whole number >= 0 (0: one process per CPU core)")
    return n


def run(argv=None) -> None:
    """Entry point of ``mtl-bench``."""
    from mtl.cli import HELP_FLAGS, UsageError, error, help_text, parse_flags, quiet_backend_logs
    from mtl.config import ConfigError
    from mtl.train.guard import TrainingInterrupted

    argv = list(sys.argv if argv is None else argv)
    if os.environ.get(CORES_ENV):  # a worker of --workers: XLA sizes its thread pool by the affinity it starts with
        os.sched_setaffinity(0, {int(c) for c in os.environ.pop(CORES_ENV).split(",")})
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
                        replace_tables=opts["replace_tables"], workers=_workers(opts["workers"]),
                        train_only=opts["train_only"], compilation_cache=opts["compilation_cache"])
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: the run's checkpoint is written; one line, not a traceback
        error(str(e), 128 + int(e.signum))
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
