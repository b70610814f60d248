"""mtl-bench's command line as a new user meets it: each mistake is one line naming what is wrong and what
exists, exit status 2, and nothing written."""

import json
import pathlib
import shutil

import pytest

from mtl.bench import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench(capsys, *args):
    with pytest.raises(SystemExit) as e:
        cli.run(["mtl-bench", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


def _one_error(status, err):
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _snapshot(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def committed(tmp_path):
    """A copy of the committed synthetic results (never the repo's own files)."""
    copy = tmp_path / "results"
    shutil.copytree(ROOT / "results" / "synthetic", copy)
    return copy


def test_unknown_flag_or_benchmark_suggests_the_closest(capsys):
    line = _one_error(*_bench(capsys, "--bench=synthetic", "--smok")[::2])
    assert line == "error: unknown argument '--smok'; did you mean '--smoke'? (see mtl-bench --help)"
    line = _one_error(*_bench(capsys, "--bench=synthtic")[::2])
    assert line.startswith("error: --bench=synthtic: no benchmark file ") and line.endswith(
        "available: census_income, census_income_tuned, kuairand_pure, synthetic, synthetic_front; "
        "did you mean 'synthetic'?")


@pytest.mark.parametrize("bench,group,cell", [("synthetic", "rho_0.9", "mmoe__ew"),
                                               ("census_income", "group2", "ple__nash_mtl")])
def test_only_matching_no_cell_names_the_cells(capsys, tmp_path, bench, group, cell):
    line = _one_error(*_bench(capsys, f"--bench={bench}", "--only=zzz", f"--workdir={tmp_path / 'w'}",
                              f"--outdir={tmp_path / 'o'}")[::2])
    assert line.startswith(f"error: --only=zzz matches no cell of {bench}")
    assert group in line and cell in line
    assert not any(tmp_path.iterdir())


def test_tables_only_without_runs_keeps_the_tables(capsys, tmp_path, committed):
    before = _snapshot(committed)
    assert json.loads((committed / "table.json").read_text())["rows"]  # a real table to protect
    line = _one_error(*_bench(capsys, "--bench=synthetic", "--tables-only", f"--workdir={tmp_path / 'typo'}",
                              f"--outdir={committed}")[::2])
    assert line.startswith(f"error: no finished runs to tabulate: {tmp_path / 'typo'} does not exist; runs are "
                           f"expected in {tmp_path / 'typo'}/<group>/<cell>/summary.json, groups rho_1.0, rho_0.9")
    # a work directory whose cells never finished: the same, with the first cell's state
    cell = tmp_path / "work" / "rho_0.9" / "mmoe__ew"
    cell.mkdir(parents=True)
    (cell / "config.json").write_text("{}")
    line = _one_error(*_bench(capsys, "--bench=synthetic", "--tables-only", f"--workdir={tmp_path / 'work'}",
                              f"--outdir={committed}")[::2])
    assert "1 cell(s) without a finished run (e.g. mmoe__ew: interrupted: no summary.json" in line
    assert _snapshot(committed) == before


def test_help_lists_every_flag(capsys):
    status, out, _ = _bench(capsys, "--help")
    assert status == 0
    for flag in ("--bench=NAME", "--smoke", "--workdir=DIR", "--outdir=DIR", "--data_dir=DIR", "--tables_only",
                 "--only=TEXT", "--replace_tables"):
        assert flag in out
