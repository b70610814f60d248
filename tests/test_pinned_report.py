"""mtl.bench.report with lower-is-better columns (log loss, MSE, MAE): Δm by hand, the bold
row and the ▲/▼ arrows, from run directories written here."""

import json

import pytest

from mtl.bench import report

SEEDS = [0, 1, 2]
COLUMNS = [("click", "logloss"), ("time", "mse"), ("time", "mae")]
# per cell, per column, per seed; "ew" and "pcgrad" are MMoE; pcgrad is lower (better) on every
# column by a steady margin, uw higher (worse) by a steady margin
VALUES = {
    ("single_task", "ew"): {"logloss": [0.50, 0.52, 0.48], "mse": [2.0, 2.2, 1.8], "mae": [1.0, 1.1, 0.9]},
    ("mmoe", "ew"): {"logloss": [0.46, 0.47, 0.48], "mse": [1.9, 2.0, 2.1], "mae": [0.95, 1.0, 1.05]},
    ("mmoe", "pcgrad"): {"logloss": [0.40, 0.42, 0.41], "mse": [1.6, 1.71, 1.79], "mae": [0.85, 0.89, 0.96]},
    ("mmoe", "uw"): {"logloss": [0.50, 0.52, 0.51], "mse": [2.3, 2.39, 2.51], "mae": [1.15, 1.21, 1.24]},
}


def _write_bench(root):
    for (model, balancer), vals in VALUES.items():
        d = root / f"{model}_{balancer}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model": {"name": model}, "balancer": {"name": balancer},
                                                   "seeds": SEEDS}))
        for s in SEEDS:
            (d / f"seed_{s}").mkdir()
            test = {"click": {"logloss": vals["logloss"][s]}, "time": {"mse": vals["mse"][s], "mae": vals["mae"][s]}}
            (d / f"seed_{s}" / "summary.json").write_text(json.dumps({
                "model": model, "balancer": balancer, "seed": s, "validation": test, "test": test,
                "dataset": "toy", "protocol": "fixed", "tasks": {"click": "binary", "time": "regression"},
                "step_seconds": 0.01, "train_seconds": 1.0}))
        (d / "summary.json").write_text(json.dumps({"seeds": SEEDS, "runs": {str(s): f"seed_{s}" for s in SEEDS}}))


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    _write_bench(root)
    specs = [report.metric_spec(t, m) for t, m in COLUMNS]
    return report.build_table(report.collect(root).cells, metrics=specs)


def _mean(cell, metric):
    v = VALUES[cell][metric]
    return sum(v) / len(v)


def _row(table, balancer, model="mmoe"):
    return next(r for r in table.rows if (r.cell.model, r.cell.balancer) == (model, balancer))


def test_lower_is_better_metrics_are_known_as_such():
    assert [report.metric_spec(t, m).higher_is_better for t, m in COLUMNS] == [False, False, False]


def test_delta_m_by_hand(table):
    stl = ("single_task", "ew")
    for balancer in ("ew", "pcgrad", "uw"):
        cell = ("mmoe", balancer)
        # lower is better: an improvement is a fall, (M_STL - M) / M_STL
        expected = sum((_mean(stl, m) - _mean(cell, m)) / _mean(stl, m) for _, m in COLUMNS) / 3
        assert _row(table, balancer).delta_m == pytest.approx(expected, rel=1e-12)
    assert _row(table, "pcgrad").delta_m > 0 > _row(table, "uw").delta_m


def test_the_lowest_value_is_bold(table):
    for j in range(len(COLUMNS)):
        assert [r.cell.balancer for r in table.rows if r.stats[j].best] == ["pcgrad"]
    assert [r.cell.balancer for r in table.rows if r.delta_m_best] == ["pcgrad"]


def test_arrows_point_up_for_lower_values(table):
    for j, (_, m) in enumerate(COLUMNS):
        assert _row(table, "pcgrad").stats[j].vs_ew.mark == 1, m  # lower than ew, significantly: better
        assert _row(table, "uw").stats[j].vs_ew.mark == -1, m
        assert _row(table, "ew").stats[j].vs_ew.mark == 0
    ew_cell = _row(table, "ew").cell
    for spec in table.metrics:
        assert report.compare_to_ew(_row(table, "pcgrad").cell, ew_cell, spec).mark == 1
