"""mtl.bench.report and mtl.bench.figures on small bench directories written here, with known numbers."""

import csv
import io
import json
import math
import pathlib
import re

import numpy as np
import pytest
from scipy import stats

from mtl.bench import figures, publish, report

TASKS = {"click": "binary", "time": "regression"}
AUC = report.MetricSpec("click", "auc", True)
MSE = report.MetricSpec("time", "mse", False)
SEEDS = [0, 1, 2]

# test metrics per seed 0, 1, 2: (click AUC, time MSE)
STL = {"auc": [0.70, 0.72, 0.71], "mse": [1.00, 1.10, 0.90]}  # means 0.71, 1.00
EW = {"auc": [0.72, 0.73, 0.74], "mse": [0.95, 0.90, 0.85]}  # means 0.73, 0.90
# clearly better than EW on both tasks (tiny spread of the paired differences)
PCGRAD = {"auc": [a + d for a, d in zip(EW["auc"], [0.010, 0.011, 0.012])],
          "mse": [m - d for m, d in zip(EW["mse"], [0.050, 0.051, 0.049])]}
# better on average, but the paired differences are noise
RLW = {"auc": [a + d for a, d in zip(EW["auc"], [0.030, -0.025, 0.005])],
       "mse": [m + d for m, d in zip(EW["mse"], [0.10, -0.12, 0.03])]}
# clearly worse on click
UW = {"auc": [a - d for a, d in zip(EW["auc"], [0.020, 0.021, 0.019])], "mse": EW["mse"]}
GRADNORM = {"auc": [0.735, 0.745], "mse": [0.88, 0.86]}  # seed 2 failed; above EW on 2 seeds


def _summary(model, balancer, seed, auc, mse, step, protocol="test_split"):
    return {"best_epoch": 2, "epochs_run": 3, "stop_reason": "max_epochs", "select_by": "loss",
            "validation": {"click": {"auc": auc - 0.01, "logloss": 0.5}, "time": {"mse": mse + 0.1, "mae": 0.7}},
            "test": {"click": {"auc": auc, "logloss": 0.5}, "time": {"mse": mse, "mae": 0.7}},
            "train_seconds": 100.0 * step / 0.01, "step_seconds": step, "model": model, "balancer": balancer,
            "dataset": "kuairand", "protocol": protocol, "tasks": TASKS, "seed": seed, "num_params": 1000,
            "commit": "abc1234", "config_hash": f"h-{model}-{balancer}"}


def _curves(seed, balancer, epochs=3, grad_cos=False):
    lines = []
    for e in range(epochs):
        w = {"click": 1.0, "time": 1.0} if balancer == "ew" else {"click": 1.0 + 0.1 * e + 0.01 * seed,
                                                                  "time": 1.0 - 0.1 * e}
        rec = {"epoch": e, "step": 10 * (e + 1), "train_loss": {"click": 0.6 - 0.05 * e, "time": 1.2 - 0.1 * e},
               "weights": w,
               "validation": {"click": {"auc": 0.6 + 0.03 * e + 0.01 * seed}, "time": {"mse": 1.5 - 0.2 * e}},
               "test": {"click": {"auc": 0.6 + 0.03 * e}, "time": {"mse": 1.5 - 0.2 * e}}, "seconds": 1.0}
        if grad_cos:
            rec["grad_norms"] = {"click": 1.0, "time": 2.0}
            rec["grad_cos"] = {"click|time": -0.1 + 0.05 * e + 0.01 * seed}
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n"


def _cell(bench, name, model, balancer, values, step, *, failed=(), protocol="test_split", grad_cos=False,
          truncated=False, label=None):
    d = bench / name
    d.mkdir()
    seeds = list(range(len(values["auc"]) + len(failed)))
    config = {"model": {"name": model, "hparams": {}}, "balancer": {"name": balancer, "hparams": {}},
              "data": {"name": "kuairand"}, "seeds": seeds}
    if label:
        config["label"] = label
    (d / "config.json").write_text(json.dumps(config))
    runs = {}
    for s in seeds:
        sd = d / f"seed_{s}"
        sd.mkdir()
        runs[str(s)] = sd.name
        if s in failed:
            (sd / "summary.json").write_text(json.dumps({"model": model, "balancer": balancer, "seed": s,
                                                         "error": "non-finite loss at epoch 1, step 7, task time"}))
            continue
        (sd / "summary.json").write_text(json.dumps(
            _summary(model, balancer, s, values["auc"][s], values["mse"][s], step,
                     protocol(s) if callable(protocol) else protocol)))
        text = _curves(s, balancer, grad_cos=grad_cos)
        if truncated and s == 0:
            text += '{"epoch": 3, "step": 4'  # a run killed while writing its last line
        (sd / "metrics.jsonl").write_text(text)
    (d / "summary.json").write_text(json.dumps({"seeds": seeds, "runs": runs}))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    b = tmp_path_factory.mktemp("bench")
    _cell(b, "single_task_ew", "single_task", "ew", STL, 0.010)
    _cell(b, "mmoe_ew", "mmoe", "ew", EW, 0.010)
    _cell(b, "mmoe_pcgrad", "mmoe", "pcgrad", PCGRAD, 0.019, grad_cos=True, truncated=True)
    _cell(b, "mmoe_rlw", "mmoe", "rlw", RLW, 0.0101)
    _cell(b, "mmoe_uw", "mmoe", "uw", UW, 0.0102)
    _cell(b, "mmoe_gradnorm", "mmoe", "gradnorm", GRADNORM, 0.015, failed=(2,))
    # one seed, files at the cell's root
    sb = b / "shared_bottom_ew"
    sb.mkdir()
    (sb / "config.json").write_text(json.dumps({"model": {"name": "shared_bottom"}, "balancer": {"name": "ew"},
                                                "seed": 0}))
    (sb / "summary.json").write_text(json.dumps(_summary("shared_bottom", "ew", 0, 0.69, 1.05, 0.008)))
    (sb / "metrics.jsonl").write_text(_curves(0, "ew"))
    # started, never finished
    (b / "mmoe_mgda").mkdir()
    (b / "mmoe_mgda" / "config.json").write_text(json.dumps({"model": {"name": "mmoe"}, "balancer": {"name": "mgda"}}))
    (b / "tables").mkdir()  # not a cell: ignored
    return b


def _by(cells, model, balancer):
    return next(c for c in cells if c.model == model and c.balancer == balancer)


def test_collect_reads_cells_and_reports_missing(bench):
    got = report.collect(bench)
    assert [(c.model, c.balancer) for c in got.cells] == [
        ("single_task", "ew"), ("shared_bottom", "ew"), ("mmoe", "ew"), ("mmoe", "gradnorm"), ("mmoe", "pcgrad"),
        ("mmoe", "rlw"), ("mmoe", "uw")]
    missing = {(m.cell, m.seed): m.reason for m in got.missing}
    assert set(missing) == {("mmoe_mgda", None), ("mmoe_gradnorm", 2)}
    assert "not finished" in missing[("mmoe_mgda", None)]
    assert "non-finite loss" in missing[("mmoe_gradnorm", 2)]
    gn = _by(got.cells, "mmoe", "gradnorm")
    assert gn.seeds == [0, 1] and gn.planned_seeds == [0, 1, 2]
    sb = _by(got.cells, "shared_bottom", "ew")
    assert sb.seeds == [0] and len(sb.runs[0].curves) == 3
    pc = _by(got.cells, "mmoe", "pcgrad")
    assert [len(pc.runs[s].curves) for s in SEEDS] == [3, 3, 3]  # truncated last line dropped
    assert pc.values(AUC).tolist() == PCGRAD["auc"] and pc.mean(MSE) == pytest.approx(np.mean(PCGRAD["mse"]))
    assert pc.std(AUC) == pytest.approx(np.std(PCGRAD["auc"], ddof=1))
    assert pc.tasks == TASKS and pc.protocol == ("kuairand", "test_split")


def test_primary_metrics_and_directions():
    assert report.primary_metrics(TASKS) == [AUC, MSE]
    assert report.metric_spec("click", "logloss").higher_is_better is False
    assert report.metric_spec("click", "gauc").higher_is_better is True
    with pytest.raises(ValueError, match="unknown direction"):
        report.metric_spec("click", "ndcg")


def test_delta_m_by_hand(bench):
    cells = report.collect(bench).cells
    stl = report.find_stl(cells)
    assert stl.model == "single_task"
    # EW: click (0.73 - 0.71) / 0.71 = +0.028169; time MSE, lower is better: -(0.90 - 1.00) / 1.00 = +0.10
    assert report.delta_m(_by(cells, "mmoe", "ew"), stl, [AUC, MSE]) == pytest.approx((0.02 / 0.71 + 0.10) / 2)
    # PCGrad: click means 0.741, MSE 0.85
    assert report.delta_m(_by(cells, "mmoe", "pcgrad"), stl, [AUC, MSE]) == pytest.approx((0.031 / 0.71 + 0.15) / 2)
    assert report.delta_m(stl, stl, [AUC, MSE]) == 0.0
    assert report.delta_m(_by(cells, "mmoe", "ew"), stl, [MSE]) == pytest.approx(0.10)
    with pytest.raises(report.DeltaMError, match=r"seeds .* \[0, 1\] differ .* \[0, 1, 2\]"):
        report.delta_m(_by(cells, "mmoe", "gradnorm"), stl, [AUC, MSE])


def test_delta_m_refuses_another_protocol(tmp_path):
    _cell(tmp_path, "stl", "single_task", "ew", STL, 0.01, protocol="paper")
    _cell(tmp_path, "ew", "mmoe", "ew", EW, 0.01)
    cells = report.collect(tmp_path).cells
    with pytest.raises(report.DeltaMError, match="protocol differs"):
        report.delta_m(_by(cells, "mmoe", "ew"), report.find_stl(cells), [AUC, MSE])


def test_delta_m_with_data_drawn_per_seed(tmp_path):
    """Generated data drawn per seed: the protocols differ across seeds but must match seed by seed."""
    _cell(tmp_path, "stl", "single_task", "ew", STL, 0.01, protocol=lambda s: f"synthetic seed={s}")
    _cell(tmp_path, "ew", "mmoe", "ew", EW, 0.01, protocol=lambda s: f"synthetic seed={s}")
    _cell(tmp_path, "pcgrad", "mmoe", "pcgrad", PCGRAD, 0.01, protocol=lambda s: f"synthetic seed={(s + 1) % 3}")
    cells = report.collect(tmp_path).cells
    stl = report.find_stl(cells)
    assert report.delta_m(_by(cells, "mmoe", "ew"), stl, [MSE]) == pytest.approx(0.10)
    with pytest.raises(report.DeltaMError, match="protocol differs"):
        report.delta_m(_by(cells, "mmoe", "pcgrad"), stl, [MSE])


@pytest.mark.parametrize("seed", range(3))
def test_paired_t_test_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=3 + seed)
    b = a + rng.normal(0.3, 0.5, size=a.size)
    t, p = report.paired_t_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert t == pytest.approx(ref.statistic, rel=1e-12) and p == pytest.approx(ref.pvalue, rel=1e-10)
    assert report.paired_t_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]) == (math.inf, 0.0)  # constant difference
    assert report.paired_t_test([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    assert all(math.isnan(x) for x in report.paired_t_test([1.0], [2.0]))


def test_significance_against_ew(bench):
    cells = report.collect(bench).cells
    ew = _by(cells, "mmoe", "ew")
    for bal, spec, mark in [("pcgrad", AUC, 1), ("pcgrad", MSE, 1), ("uw", AUC, -1), ("rlw", AUC, 0), ("rlw", MSE, 0)]:
        c = _by(cells, "mmoe", bal)
        cmp = report.compare_to_ew(c, ew, spec)
        ref = stats.ttest_rel(c.values(spec), ew.values(spec))
        assert cmp.p == pytest.approx(ref.pvalue, rel=1e-10) and cmp.n_pairs == 3
        assert cmp.mark == mark, (bal, spec, cmp)
    rlw = report.compare_to_ew(_by(cells, "mmoe", "rlw"), ew, AUC)
    assert rlw.p > 0.5 and _by(cells, "mmoe", "rlw").mean(AUC) > ew.mean(AUC)  # better mean, not a result
    # two common seeds: no test, no mark, however large the difference
    gn = report.compare_to_ew(_by(cells, "mmoe", "gradnorm"), ew, AUC)
    assert gn.mark == 0 and gn.n_pairs == 2 and math.isnan(gn.p)
    assert report.compare_to_ew(ew, ew, AUC).mark == 0


def _md_table(text):
    rows = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in re.split(r"(?<!\\)\|", r)[1:-1]] for r in rows]
    assert set("".join(split[1])) <= set("-:")
    return split[0], split[2:]


def test_write_tables(bench, tmp_path):
    got = report.collect(bench)
    header = {"protocol": "kuairand test_split (60/20/20)", "seeds": [0, 1, 2], "commit": "abc1234",
              "config_hash": "cafef00d", "command": "mtl-bench --tables-only"}
    paths = report.write_tables(got, tmp_path / "out", title="KuaiRand: MMoE_x balancers", header=header)
    assert set(paths) == {"md", "csv", "tex"} and all(p.stat().st_size > 0 for p in paths.values())

    md = paths["md"].read_text()
    top = md.split("| model")[0]
    for line in ("Protocol: kuairand test_split (60/20/20)", "Seeds: 0, 1, 2", "Commit: abc1234",
                 "Config hash: cafef00d", "Command: mtl-bench --tables-only", "paired t-test"):
        assert line in top
    cols, rows = _md_table(md)
    assert cols == ["model", "balancer", "n", "click auc ↑", "time mse ↓", "Δm (%)", "step / EW", "time (s)"]
    by = {(r[0], r[1]): dict(zip(cols, r)) for r in rows}
    assert len(rows) == 7
    pc, rlw, uw = by[("mmoe", "pcgrad")], by[("mmoe", "rlw")], by[("mmoe", "uw")]
    assert pc["click auc ↑"] == "**0.7410 ± 0.0110** ▲" and pc["time mse ↓"].endswith("** ▲")
    assert pc["Δm (%)"] == f"**{100 * (0.031 / 0.71 + 0.15) / 2:+.2f}**" and pc["step / EW"] == "1.90"
    assert "▲" not in rlw["click auc ↑"] + rlw["time mse ↓"] and "▼" not in rlw["click auc ↑"] + rlw["time mse ↓"]
    assert uw["click auc ↑"].endswith("▼") and "**" not in uw["click auc ↑"]
    assert by[("mmoe", "gradnorm")]["Δm (%)"] == "—" and "▲" not in by[("mmoe", "gradnorm")]["click auc ↑"]
    assert by[("mmoe", "gradnorm")]["n"] == "2"
    assert by[("single_task", "ew")]["Δm (%)"] == "+0.00"
    assert by[("shared_bottom", "ew")]["click auc ↑"] == "0.6900"  # one seed: no std
    notes = md.split("Notes:")[1]
    assert "mmoe_mgda: interrupted: no summary.json" in notes and "mmoe_gradnorm seed 2: failed" in notes
    assert "Δm of mmoe + gradnorm not computed" in notes

    recs = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    r = {(x["model"], x["balancer"]): x for x in recs}
    assert len(recs) == 7
    ew = r[("mmoe", "ew")]
    assert float(ew["delta_m_pct"]) == pytest.approx(100 * (0.02 / 0.71 + 0.10) / 2)
    assert float(ew["click_auc_mean"]) == pytest.approx(0.73) and ew["click_auc_vs_ew"] == ""
    assert r[("mmoe", "pcgrad")]["click_auc_vs_ew"] == "better" and r[("mmoe", "uw")]["click_auc_vs_ew"] == "worse"
    rlw = r[("mmoe", "rlw")]
    assert rlw["click_auc_vs_ew"] == ""
    assert float(rlw["click_auc_p_vs_ew"]) == pytest.approx(stats.ttest_rel(RLW["auc"], EW["auc"]).pvalue)
    assert [x["click_auc_best"] for x in recs].count("1") == 1 and r[("mmoe", "pcgrad")]["time_mse_best"] == "1"
    assert r[("mmoe", "pcgrad")]["config_hash"] == "h-mmoe-pcgrad" and r[("mmoe", "gradnorm")]["seeds"] == "0 1"
    assert r[("mmoe", "gradnorm")]["delta_m_pct"] == "" and "seeds" in r[("mmoe", "gradnorm")]["delta_m_note"]

    tex = paths["tex"].read_text()
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    lines = [x for x in body.splitlines() if x.strip() and x.strip() != "\\midrule"]
    assert len(lines) == 7 and all(x.endswith("\\\\") and x.count(" & ") == len(cols) - 1 for x in lines)
    head = tex.split("\\toprule")[1].split("\\midrule")[0]
    assert head.count(" & ") == len(cols) - 1 and "$\\Delta$m (\\%)" in head
    assert "\\caption{KuaiRand: MMoE\\_x balancers." in tex and "single\\_task" in tex
    assert re.search(r"(?<!\\)_", body) is None  # every underscore escaped
    assert "\\textbf{0.7410 $\\pm$ 0.0110}$^{\\blacktriangle}$" in tex
    assert tex.count("\\begin{tabular}") == 1 and "\\end{table}" in tex


def test_best_marks_ties_at_printed_precision(bench):
    cells = report.collect(bench).cells
    table = report.build_table(cells, metrics=[AUC])
    assert [r.cell.balancer for r in table.rows if r.stats[0].best] == ["pcgrad"]
    assert report._mark_best([0.74101, 0.74099, 0.7], True, 4) == [True, True, False]
    assert report._mark_best([1.0, 0.5, float("nan")], False, 4) == [False, True, False]


def test_no_stl_cell_is_stated(tmp_path):
    _cell(tmp_path, "ew", "mmoe", "ew", EW, 0.01)
    paths = report.write_tables(report.collect(tmp_path), tmp_path / "out", title="t")
    assert "No single_task + ew cell: Δm not computed." in paths["md"].read_text()


def test_figures_written(bench, tmp_path):
    cells = report.collect(bench).cells
    paths = figures.write_figures(cells, tmp_path)
    assert set(paths) == {"tradeoff", "validation_curves", "task_weights", "grad_cosine"}
    import matplotlib.image

    for p in paths.values():
        assert p.stat().st_size > 5000
        assert matplotlib.image.imread(p).shape[1] == pytest.approx(figures.COLUMN_WIDTH * figures.DPI, abs=2)
    # three metric columns: one panel per metric; no gradient cosines recorded: no figure
    spec3 = [AUC, MSE, report.MetricSpec("time", "mae", False)]
    assert figures.tradeoff(cells, tmp_path / "t3.png", metrics=spec3).stat().st_size > 5000
    no_cos = [c for c in cells if c.balancer != "pcgrad"]
    assert figures.grad_cosine(no_cos, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_render_end_to_end(bench, tmp_path):
    paths = report.render(bench, tmp_path / "results", title="bench", figures=False)
    assert set(paths) == {"md", "csv", "tex"} and "Missing: mmoe_mgda: interrupted" in paths["md"].read_text()


def test_an_interrupted_cell_is_missing_with_its_reason(tmp_path):
    _cell(tmp_path, "stl", "single_task", "ew", STL, 0.01)
    cut = tmp_path / "mmoe_pcgrad"
    cut.mkdir()
    (cut / "config.json").write_text(json.dumps({"model": {"name": "mmoe"}, "balancer": {"name": "pcgrad"}}))
    (cut / "summary.json").write_text(json.dumps({"model": "mmoe", "interrupted": "SIGTERM at epoch 4, step 7"}))
    got = report.collect(tmp_path)
    assert [c.name for c in got.cells] == ["stl"]
    assert [str(m) for m in got.missing] == ["mmoe_pcgrad: interrupted: SIGTERM at epoch 4, step 7"]


def test_files_are_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "table.md"
    publish.write_text(path, "the old table\n")
    with pytest.raises(UnicodeEncodeError):
        publish.write_text(path, "a new table, cut short \ud800 by an error while writing\n")
    assert path.read_text() == "the old table\n" and sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_tables_are_rendered_before_any_is_written(bench, tmp_path, monkeypatch):
    paths = report.write_tables(report.collect(bench), tmp_path, title="first")
    before = {k: p.read_bytes() for k, p in paths.items()}
    assert report.saved_seed_counts(tmp_path) == {"single_task_ew": 3, "shared_bottom_ew": 1, "mmoe_ew": 3,
                                                  "mmoe_gradnorm": 2, "mmoe_pcgrad": 3, "mmoe_rlw": 3, "mmoe_uw": 3}

    def broken(*args, **kwargs):
        raise RuntimeError("LaTeX rendering failed")

    monkeypatch.setattr(report, "render_latex", broken)
    with pytest.raises(RuntimeError):
        report.write_tables(report.collect(bench), tmp_path, title="second")
    assert {k: p.read_bytes() for k, p in paths.items()} == before


def test_publish_losses():
    assert publish.losses({"a": 3, "b": 2}, {"a": 3, "b": 5, "c": 1}) == []
    assert publish.losses({"a": 3, "b": 2}, {"a": 2}) == ["a would have 2 seeds instead of 3",
                                                         "b (2 seeds) would disappear"]
    assert report.saved_seed_counts(pathlib.Path("/nonexistent")) == {}
