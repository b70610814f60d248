"""The tuned path of mtl-bench end to end on tiny synthetic data: grid points, selection, final
seeds, the scalarization front at equal weighting's chosen rate, tables, figure, --tables-only."""

import json
import pathlib

from mtl.bench.cli import CORES_ENV, run_bench

BENCH = '''
from mtl.bench.grid import Benchmark, CellSpec, front

CONFIG = "experiments/configs/synthetic.py:smoke"
EXTRA = {"data_per_seed": True, "checkpoint_every": 0, "epochs": 1, "data.num_train": 400,
         "data.num_validation": 200, "data.num_test": 200}


def get_bench(smoke):
    cells = [CellSpec("single_task__ew", CONFIG, {"model.name": "single_task", "balancer.name": "ew", **EXTRA}),
             CellSpec("mmoe__ew", CONFIG, {"model.name": "mmoe", "balancer.name": "ew", **EXTRA},
                      tune={"learning_rate": (1e-3, 3e-2)})]
    cells += front(CONFIG, "mmoe", [(1.0, 0.0), (0.5, 0.5)], tune_from="mmoe__ew", extra=EXTRA)
    return Benchmark(title="tiny tuned", groups={"g": cells}, seeds=3, tune_seeds=(100,), tuning="rate only")
'''


def _score(point: pathlib.Path) -> float:
    """Minus the mean validation MSE of the point's one seed (the synthetic labels are not standardised)."""
    s = next(s for s in (json.loads(p.read_text()) for p in point.rglob("summary.json")) if "validation" in s)
    return -(s["validation"]["task1"]["mse"] + s["validation"]["task2"]["mse"]) / 2


def test_tuned_bench_trains_selects_and_tabulates(tmp_path, capsys):
    bench = tmp_path / "tiny.py"
    bench.write_text(BENCH)
    work, out = tmp_path / "work", tmp_path / "out"
    result = run_bench(str(bench), workdir=str(work), outdir=str(out))
    assert result["failures"] == {}
    g = work / "g"
    points = {lr: g / "mmoe__ew" / f"learning_rate={lr}" for lr in (0.001, 0.03)}
    for lr, d in points.items():  # one ordinary run directory per grid point, with the tuning seeds
        assert json.loads((d / "config.json").read_text())["learning_rate"] == lr
    # the grid trained as one sweep (both points side by side in one program)
    assert json.loads((g / "mmoe__ew" / "summary.json").read_text())["points"] == {
        "learning_rate=0.001": "finished", "learning_rate=0.03": "finished"}
    chosen = max(points, key=lambda lr: _score(points[lr]))
    final = g / "mmoe__ew" / "final" / f"learning_rate={chosen}"
    assert json.loads((final / "summary.json").read_text())["seeds"] == [0, 1, 2]
    for w in ("1_0", "0.5_0.5"):  # the front at equal weighting's chosen rate, no grid of its own
        runs = [p.name for p in (g / f"mmoe__fixed_{w}").iterdir()]
        assert runs == ["final"]
        config = json.loads((g / f"mmoe__fixed_{w}" / "final" / f"learning_rate={chosen}" / "config.json").read_text())
        assert config["learning_rate"] == chosen and config["balancer"]["name"] == "fixed"
    table = (out / "g" / "table.md").read_text()
    # a two-value grid: the choice is on its edge
    assert f"learning_rate ∈ {{0.001, 0.03}} → {chosen:g}†; selected over 1 seeds |" in table
    assert f"learning_rate ∈ {{0.001, 0.03}} → {chosen:g}† (from mmoe__ew) | front point |" in table
    assert "- Tuning: rate only; selection seeds 100, final seeds 3" in table
    assert "| vs front | HV |" in table and "Hypervolume reference point" in table
    assert "What the numbers show:" in table and "Against mmoe's scalarization front (2 fixed weightings" in table
    assert (out / "g" / "front.png").stat().st_size > 0
    # a rerun trains nothing; --tables-only gives the same table from the run directories
    capsys.readouterr()
    run_bench(str(bench), workdir=str(work), outdir=str(out))
    assert capsys.readouterr().out.count("finished, skipped") == 5  # the sweep, 3 final runs, single-task
    (out / "g" / "table.md").unlink()
    run_bench(str(bench), workdir=str(work), outdir=str(out), tables_only=True)
    assert (out / "g" / "table.md").read_text() == table
    # a grown grid trains only its new point; the points trained before are kept as they are
    written = {lr: (d / "summary.json").stat().st_mtime_ns for lr, d in points.items()}
    spent = json.loads((g / "mmoe__ew" / "bench_wall.json").read_text())["wall_seconds"]
    bench.write_text(BENCH.replace("(1e-3, 3e-2)", "(1e-3, 3e-2, 0.1)"))
    capsys.readouterr()
    assert run_bench(str(bench), workdir=str(work), outdir=str(out))["failures"] == {}
    assert "g/mmoe__ew (sweep of 3 points): running its new sweep points" in capsys.readouterr().out
    assert {lr: (d / "summary.json").stat().st_mtime_ns for lr, d in points.items()} == written
    assert json.loads((g / "mmoe__ew" / "summary.json").read_text())["points"] == {
        "learning_rate=0.001": "finished", "learning_rate=0.03": "finished", "learning_rate=0.1": "finished"}
    assert "learning_rate ∈ {0.001, 0.03, 0.1}" in (out / "g" / "table.md").read_text()
    assert json.loads((g / "mmoe__ew" / "bench_wall.json").read_text())["wall_seconds"] > spent  # both growths' time


def test_workers_train_each_run_once_and_give_the_same_table(tmp_path, capfd):
    """Two worker processes (one core each): every run is trained by exactly one of them, the final runs
    wait for their grid, and the table equals the one of a single process trained on one core."""
    import os
    import subprocess
    import sys

    bench = tmp_path / "tiny.py"
    bench.write_text(BENCH)
    work, out = tmp_path / "work", tmp_path / "out"
    result = run_bench(str(bench), workdir=str(work), outdir=str(out), workers=2)
    assert result["failures"] == {}
    printed, errors = capfd.readouterr()
    # the runs: the sweep of mmoe__ew, its final, the two front finals, single-task
    trained = sorted(str(p.parent.relative_to(work)) for p in work.rglob("bench_wall.json"))
    assert len(trained) == 5 and len(set(trained)) == 5
    assert printed.count("    done in ") == 5
    assert "2 workers trained 5 run(s)" in printed and "os.fork()" not in errors
    log = json.loads((work / "bench_elapsed.json").read_text())
    assert [(e["workers"], e["runs_trained"]) for e in log] == [(2, 5)]
    table = (out / "g" / "table.md").read_text()
    assert "over the 1 invocation that trained with 2 worker processes side by side (5 runs)" in table

    alone_work, alone_out = tmp_path / "alone", tmp_path / "alone_out"
    one_core = str(min(os.sched_getaffinity(0)))  # what a worker gets on a machine of 2 cores or more
    subprocess.run([sys.executable, "-m", "mtl.bench.cli", f"--bench={bench}", f"--workdir={alone_work}",
                    f"--outdir={alone_out}"], check=True, env={**os.environ, CORES_ENV: one_core})

    def rows(text):  # the table without its timing columns
        lines = [line.split(" | ") for line in text.splitlines() if line.startswith("|")]
        timed = [i for i, name in enumerate(lines[0]) if name in ("step / EW", "time (s)")]
        assert len(timed) == 2
        return [[x for i, x in enumerate(line) if i not in timed] for line in lines]
    assert rows((alone_out / "g" / "table.md").read_text()) == rows(table)


def test_sigterm_to_workers_parent_checkpoints_every_worker(tmp_path):
    """SIGTERM to ``mtl-bench --workers=2`` reaches the workers: each writes its run's checkpoint and stops,
    the parent says so and exits non-zero, and no worker outlives it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mtl.rundir import run_status

    bench = tmp_path / "long.py"
    bench.write_text(BENCH.replace('"epochs": 1', '"epochs": 500, "patience": 0'))
    work = tmp_path / "work"
    parent = subprocess.Popen([sys.executable, "-m", "mtl.bench.cli", f"--bench={bench}", f"--workdir={work}",
                               "--workers=2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not any(work.rglob("metrics.jsonl")) and time.time() < deadline and parent.poll() is None:
        time.sleep(0.5)  # until a worker has trained an epoch
    assert parent.poll() is None, parent.communicate()
    parent.send_signal(signal.SIGTERM)
    out, err = parent.communicate(timeout=240)
    assert parent.returncode != 0 and "stopped by signal 15" in err and "the same command resumes" in err
    assert "Traceback" not in err  # each worker says in one line where its checkpoint is
    assert "error: interrupted by SIGTERM" in err
    started = {p.parent for p in work.rglob("config.json")}
    assert started and all(run_status(d).state == "interrupted" for d in started), [run_status(d) for d in started]
    assert all("SIGTERM" in run_status(d).reason for d in started if (d / "summary.json").exists())
    workers = [p for p in os.listdir("/proc") if p.isdigit() and str(work).encode() in _cmdline(p)]
    assert workers == []


def _cmdline(pid: str) -> bytes:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""
