"""`mtl-bench --bench=synthetic --smoke`: the whole harness, from grid to tables, figures and the paper table."""

import json

from mtl.bench.cli import run_bench


def test_synthetic_bench_smoke(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "results"
    result = run_bench("synthetic", smoke=True, workdir=str(work), outdir=str(out))
    assert result["failures"] == {}
    cells = sorted(p.name for p in (work / "rho_0.9").iterdir() if p.is_dir())
    assert cells == ["mmoe__ew", "single_task__ew"]
    for cell in cells:  # ordinary mtl-train run directories, one folder per seed
        summary = json.loads((work / "rho_0.9" / cell / "summary.json").read_text())
        assert summary["seeds"] == [0, 1] and "test_mean" in summary
        assert (work / "rho_0.9" / cell / "seed_1" / "metrics.jsonl").is_file()
    table = (out / "rho_0.9" / "table.md").read_text()
    assert "Δm" in table and "single_task" in table and "mmoe" in table
    for ext in ("csv", "tex"):
        assert (out / "rho_0.9" / f"table.{ext}").is_file()
    assert (out / "rho_0.9" / "tradeoff.png").is_file()
    assert "MMoE synthetic experiment" in (out / "table.md").read_text() and (out / "loss_curves.png").is_file()
    # a rerun skips the finished cells; --tables-only re-renders from the run directories
    capsys.readouterr()
    run_bench("synthetic", smoke=True, workdir=str(work), outdir=str(out))
    assert capsys.readouterr().out.count("finished, skipped") == 2
    (out / "rho_0.9" / "table.md").unlink()
    run_bench("synthetic", smoke=True, workdir=str(work), outdir=str(out), tables_only=True)
    assert (out / "rho_0.9" / "table.md").read_text() == table
