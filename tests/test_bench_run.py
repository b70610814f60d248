"""`mtl-bench --bench=synthetic --smoke`: the whole harness, from grid to tables, figures and the paper table."""

import json
import pathlib
import shutil

import pytest

from experiments import synthetic_report
from mtl.bench.cli import BenchError, load_bench, run_bench

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _snapshot(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_bench_smoke(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "results"
    bench_file = "experiments/benchmarks/synthetic.py"  # a path, as a user may give it
    result = run_bench(bench_file, smoke=True, workdir=str(work), outdir=str(out))
    assert result["failures"] == {}
    cells = sorted(p.name for p in (work / "rho_0.9").iterdir() if p.is_dir())
    assert cells == ["mmoe__ew", "single_task__ew"]
    for cell in cells:  # ordinary mtl-train run directories, one folder per seed
        summary = json.loads((work / "rho_0.9" / cell / "summary.json").read_text())
        assert summary["seeds"] == [0, 1] and "test_mean" in summary
        assert (work / "rho_0.9" / cell / "seed_1" / "metrics.jsonl").is_file()
    table = (out / "rho_0.9" / "table.md").read_text()
    assert "Δm" in table and "single_task" in table and "mmoe" in table
    # the command that regenerates it, runnable as printed
    assert f"- Command: mtl-bench --bench={bench_file} --smoke --workdir={work} --outdir={out}\n" in table
    for ext in ("csv", "tex"):
        assert (out / "rho_0.9" / f"table.{ext}").is_file()
    assert (out / "rho_0.9" / "tradeoff.png").is_file()
    assert "MMoE synthetic experiment" in (out / "table.md").read_text() and (out / "loss_curves.png").is_file()
    # a rerun skips the finished cells; --tables-only re-renders from the run directories
    capsys.readouterr()
    run_bench(bench_file, smoke=True, workdir=str(work), outdir=str(out))
    assert capsys.readouterr().out.count("finished, skipped") == 2
    (out / "rho_0.9" / "table.md").unlink()
    run_bench(bench_file, smoke=True, workdir=str(work), outdir=str(out), tables_only=True)
    assert (out / "rho_0.9" / "table.md").read_text() == table

    # the committed tables (10 seeds, 5 cells per rho) are not replaced by these (2 seeds, 2 cells) ...
    committed = tmp_path / "committed"
    shutil.copytree(ROOT / "results" / "synthetic", committed)
    before = _snapshot(committed)
    with pytest.raises(BenchError, match=r"rho_0.9/table.csv holds more than the runs in .* give: mmoe__ew would "
                                         r"have 2 seeds instead of 10; omoe__ew \(10 seeds\) would disappear"):
        run_bench(bench_file, smoke=True, workdir=str(work), outdir=str(committed), tables_only=True)
    with pytest.raises(ValueError, match=r"table.json holds more than the runs in .* give: .*MMoE rho=0.9 "
                                         r"would have 2 seeds instead of 10"):
        synthetic_report.report(work, committed, load_bench(bench_file, True))
    assert _snapshot(committed) == before
    # ... unless asked
    run_bench(bench_file, smoke=True, workdir=str(work), outdir=str(committed), tables_only=True, replace_tables=True)
    rows = json.loads((committed / "table.json").read_text())["rows"]
    assert [(r["model"], r["rho"], r["seeds"]) for r in rows] == [("MMoE", 0.9, 2.0), (
        "Single-task (one network per task)", 0.9, 2.0)]
    assert (committed / "rho_0.9" / "table.md").read_text() == table.replace(str(out), str(committed))
