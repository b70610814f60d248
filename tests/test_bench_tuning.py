"""mtl-bench's tuning protocol from fabricated run directories: the selection score, the chosen
point and its edge mark, the hypervolume, beyond/on/inside, and the generated paragraph."""

import json
import pathlib

import numpy as np
import pytest

from mtl.bench import front as fr
from mtl.bench import report
from mtl.bench.grid import own_hparam_rows, own_hparam_text, simplex
from mtl.bench.results import CellResults, MetricSpec, SeedResult
from mtl.bench.tuning import Point, Tuning, edge_keys, summary_score, tune
from mtl.rundir import point_name

TASKS = {"a": "binary", "b": "binary"}


def _write_run(d: pathlib.Path, val_auc: dict[int, tuple[float, float]]):
    """A finished run of several seeds whose validation AUCs per seed are ``val_auc``."""
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"seeds": sorted(val_auc)}))
    for s, (a, b) in val_auc.items():
        (d / f"seed_{s}").mkdir()
        val = {"a": {"auc": a, "logloss": 0.5}, "b": {"auc": b, "logloss": 0.5}}
        (d / f"seed_{s}" / "summary.json").write_text(json.dumps(
            {"seed": s, "validation": val, "test": val, "select_by": "auc", "tasks": TASKS}))
    (d / "summary.json").write_text(json.dumps({"seeds": sorted(val_auc), "runs": {str(s): f"seed_{s}"
                                                                                    for s in val_auc}}))


GRID = {"learning_rate": (1e-3, 3e-3, 1e-2), "balancer.hparams.c": (0.2, 0.4)}


def test_selection_picks_the_best_mean_over_seeds_and_marks_the_edge(tmp_path):
    # mean over seeds of the mean of the two AUCs; (3e-3, 0.4) has the best mean (0.80),
    # (1e-2, 0.2) the best single seed (0.95) but a lower mean (0.70)
    scores = {(1e-3, 0.2): (0.60, 0.62, 0.64), (1e-3, 0.4): (0.70, 0.70, 0.71), (3e-3, 0.2): (0.75, 0.76, 0.77),
              (3e-3, 0.4): (0.79, 0.80, 0.81), (1e-2, 0.2): (0.95, 0.60, 0.55), (1e-2, 0.4): (0.50, 0.50, 0.50)}
    for (lr, c), per_seed in scores.items():
        values = {"learning_rate": lr, "balancer.hparams.c": c}
        # task a and b AUCs whose mean is the intended score
        _write_run(tmp_path / point_name(values), {s: (v + 0.05, v - 0.05) for s, v in enumerate(per_seed)})
    t = tune(tmp_path, GRID, [0, 1, 2])
    assert t.chosen == {"learning_rate": 3e-3, "balancer.hparams.c": 0.4}
    assert t.edge == ["balancer.hparams.c"]  # 0.4 is the largest c; 3e-3 is inside the rate grid
    assert t.text() == "learning_rate ∈ {0.001, 0.003, 0.01} → 0.003; c ∈ {0.2, 0.4} → 0.4†"
    assert [round(p.score, 6) for p in t.points] == [0.62, 0.703333, 0.76, 0.8, 0.7, 0.5]


def test_a_missing_point_is_skipped_and_said(tmp_path):
    _write_run(tmp_path / point_name({"learning_rate": 1e-3}), {0: (0.6, 0.6), 1: (0.6, 0.6)})
    _write_run(tmp_path / point_name({"learning_rate": 3e-3}), {0: (0.7, 0.7), 1: (0.7, 0.7)})
    t = tune(tmp_path, {"learning_rate": (1e-3, 3e-3, 1e-2)}, [0, 1])
    assert t.chosen == {"learning_rate": 3e-3} and t.edge == []
    assert t.text().endswith("(2 of 3 points finished)")
    assert t.points[2].missing == ["not trained"]


def test_ties_go_to_the_earlier_point_and_edges_of_non_numbers():
    from mtl.bench.tuning import select

    pts = [Point({"x": 1}, pathlib.Path("a"), {0: 0.5}), Point({"x": 2}, pathlib.Path("b"), {0: 0.5})]
    assert select(pts) is pts[0]
    assert edge_keys({"w": ((0, 1), (0.5, 0.5), (1, 0))}, {"w": (0.5, 0.5)}) == []
    assert edge_keys({"w": ((0, 1), (0.5, 0.5), (1, 0))}, {"w": (1, 0)}) == ["w"]
    assert edge_keys({"lr": (3e-3, 1e-3, 1e-2)}, {"lr": 3e-3}) == []  # unsorted grid: edges are min and max
    assert edge_keys({"lr": (1e-3,)}, {"lr": 1e-3}) == []  # a one-value grid has no edge to be on


def test_selection_score_of_a_summary_by_hand():
    val = {"a": {"auc": 0.8, "logloss": 0.4}, "y": {"mse": 8.0}, "b": {"auc": 0.6, "logloss": 0.2}}
    tasks = {"a": "binary", "y": "regression", "b": "binary"}
    assert summary_score({"validation": val, "tasks": tasks, "select_by": "auc"}) == pytest.approx(0.7)
    # loss: minus the mean of log losses and MSE / label_std^2 (std 2: 8 / 4 = 2)
    s = {"validation": val, "tasks": tasks, "select_by": "loss",
         "data_info": {"label_standardization": {"y": [1.0, 2.0]}}}
    assert summary_score(s) == pytest.approx(-(0.4 + 2.0 + 0.2) / 3)


# ---- hypervolume -----------------------------------------------------------------------------------------------


def test_hypervolume_2d_by_hand():
    # staircase of (1,3), (2,2), (3,1) above (0,0): 3*1 + 2*1 + 1*1
    assert fr.hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == pytest.approx(6.0)
    # a dominated point and points below the reference point in one coordinate add nothing
    assert fr.hypervolume([(1, 3), (2, 2), (3, 1), (1, 1), (5, -1), (-1, 5)], (0, 0)) == pytest.approx(6.0)
    assert fr.hypervolume([(0.9, 0.8)], (0.5, 0.6)) == pytest.approx(0.4 * 0.2)
    assert fr.hypervolume([(2, 3), (4, 1)], (1, 0)) == pytest.approx(1 * 3 + 2 * 1)


def test_hypervolume_3d_by_inclusion_exclusion():
    # |A| + |B| - |A ∩ B|
    assert fr.hypervolume([(1, 1, 1), (2, 2, 0.5)], (0, 0, 0)) == pytest.approx(1 + 2 - 0.5)
    assert fr.hypervolume([(1, 2, 3), (3, 2, 1)], (0, 0, 0)) == pytest.approx(6 + 6 - 2)
    # three boxes: 6 + 6 + 6 - (2 + 2 + 2) + 1 ... (1,2,3), (3,1,2), (2,3,1): pairwise 1*1*2 each, triple 1*1*1
    assert fr.hypervolume([(1, 2, 3), (3, 1, 2), (2, 3, 1)], (0, 0, 0)) == pytest.approx(18 - 6 + 1)


# ---- beyond / on / inside ----------------------------------------------------------------------------------------

M = [MetricSpec("a", "auc", True), MetricSpec("b", "logloss", False)]
NOISE = np.array([0.0, 0.001, -0.001, 0.0005])


def _cell(name, a, b, balancer="pcgrad", model="mmoe", seeds=4):
    runs = {}
    for s in range(seeds):
        test = {"a": {"auc": a + NOISE[s]}, "b": {"logloss": b - NOISE[s] / 2}}
        runs[s] = SeedResult(s, pathlib.Path(name), {"test": test, "validation": test, "dataset": "toy",
                                                     "protocol": "p", "tasks": {"a": "binary", "b": "binary"}}, [])
    return CellResults(name, pathlib.Path(name), {}, model, balancer, runs, variant=name if balancer == "fixed" else "")


def test_classify_inside_beyond_on():
    f1, f2 = _cell("f1", 0.80, 0.30, "fixed"), _cell("f2", 0.70, 0.20, "fixed")
    # f1 better in both metrics (higher AUC, lower log loss) than this point
    assert fr.classify(_cell("m", 0.75, 0.35), [f1, f2], M).relation == "inside"
    # better than f2 in both metrics, f1 not better than it in both
    v = fr.classify(_cell("m", 0.72, 0.18), [f1, f2], M)
    assert v.relation == "beyond" and v.dominates == ("mmoe + fixed (f2)",)
    # better than f1 in AUC alone, as good in log loss: neither side dominates
    assert fr.classify(_cell("m", 0.85, 0.30), [f1, f2], M).relation == "on"
    # better than a weak front point, worse than a strong one: on
    weak, strong = _cell("w", 0.60, 0.40, "fixed"), _cell("s", 0.80, 0.20, "fixed")
    assert fr.classify(_cell("m", 0.70, 0.30), [weak, strong], M).relation == "on"
    # fewer than 3 seeds in common: no test
    assert fr.classify(_cell("m", 0.75, 0.35, seeds=2), [f1, f2], M).relation == "untested"


def test_beating_only_a_vertex_of_the_front_is_not_beyond():
    """A vertex (a zero weight: a task untrained) is beaten by any trained point; the test leaves it out."""
    vertex = _cell("v", 0.50, 0.90, "fixed")
    vertex.config = {"balancer": {"name": "fixed", "hparams": {"weights": [0.0, 1.0]}}}
    interior = _cell("i", 0.80, 0.20, "fixed")
    interior.config = {"balancer": {"name": "fixed", "hparams": {"weights": [0.5, 0.5]}}}
    # better than the vertex in both metrics, worse than the interior point in AUC, better in log loss: on
    v = fr.classify(_cell("m", 0.75, 0.15), [vertex, interior], M)
    assert v.relation == "on" and v.dominates == ()
    # a front of vertices only is still tested against them
    assert fr.classify(_cell("m", 0.75, 0.15), [vertex], M).relation == "beyond"


def test_reference_point_is_the_minimum_minus_a_tenth_of_the_range():
    cells = [_cell("x", 0.8, 0.3), _cell("y", 0.6, 0.1)]
    # oriented seed means: (0.8, -0.3) and (0.6, -0.1) shifted by the noise's mean (+e, +e/2); ranges 0.2 and 0.2
    e = NOISE.mean()
    np.testing.assert_allclose(fr.reference_point(cells, M), [0.6 + e - 0.02, -0.3 + e / 2 - 0.02])


def test_reference_point_leaves_out_the_fronts_vertices():
    """A weighting with a zero weight leaves its task untrained (near chance): it does not set the reference."""
    vertex = _cell("v", 0.5, 0.9, "fixed")
    vertex.config = {"balancer": {"name": "fixed", "hparams": {"weights": [0.0, 1.0]}}}
    interior = _cell("i", 0.7, 0.2, "fixed")
    interior.config = {"balancer": {"name": "fixed", "hparams": {"weights": [0.5, 0.5]}}}
    cells = [_cell("x", 0.8, 0.3), interior, vertex]
    assert fr.is_vertex(vertex) and not fr.is_vertex(interior) and not fr.is_vertex(cells[0])
    e = NOISE.mean()  # oriented means (0.8, -0.3), (0.7, -0.2): ranges 0.1 and 0.1
    np.testing.assert_allclose(fr.reference_point(cells, M), [0.7 + e - 0.01, -0.3 + e / 2 - 0.01])
    # the vertex still counts in a hypervolume where it is above the reference: here it is not (AUC 0.5)
    ref = fr.reference_point(cells, M)
    assert fr.hypervolume([fr.oriented(vertex, M)], ref) == 0.0
    # a benchmark of vertices only falls back to every cell
    np.testing.assert_allclose(fr.reference_point([vertex], M), fr.oriented(vertex, M) - 1e-3)


def test_the_front_figure_leaves_out_the_vertices(tmp_path, monkeypatch):
    import matplotlib.axes

    vertex = _cell("v", 0.5, 0.9, "fixed")
    vertex.config = {"balancer": {"name": "fixed", "hparams": {"weights": [0.0, 1.0]}}}
    a, b = _cell("a", 0.7, 0.2, "fixed"), _cell("b", 0.8, 0.3, "fixed")
    for c, w in ((a, [0.5, 0.5]), (b, [0.7, 0.3])):
        c.config = {"balancer": {"name": "fixed", "hparams": {"weights": w}}}
    lines, plot = [], matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, x, *rest, **kw: lines.append(list(x)) or plot(
        ax, x, *rest, **kw))  # fmt: skip
    assert fr.figure([vertex, a, b, _cell("m", 0.75, 0.25)], tmp_path / "front.png", M) is not None
    e = NOISE.mean()
    np.testing.assert_allclose(lines, [[0.7 + e, 0.8 + e]])  # the two interior points, sorted; not the vertex's 0.5


# ---- the paragraph -------------------------------------------------------------------------------------------------


def _tuned(cell):
    cell.tuning = Tuning({"learning_rate": (1e-3, 3e-3)}, [], {"learning_rate": 1e-3}, ["learning_rate"], [9, 10])
    return cell


def test_paragraph_says_who_beats_tuned_ew_the_front_and_single_task():
    cells = [_cell("stl", 0.70, 0.30, "ew", "single_task"), _tuned(_cell("ew", 0.75, 0.25, "ew")),
             _tuned(_cell("good", 0.78, 0.25)), _tuned(_cell("same", 0.75, 0.25, "uw")),
             _cell("f1", 0.74, 0.26, "fixed"), _cell("f2", 0.76, 0.27, "fixed"),
             _cell("mixed", 0.72, 0.32, "mgda")]  # against single-task: better AUC, worse log loss
    cells[2].balancer = "pcgrad"
    table = report.build_table(cells, metrics=M)
    p = table.paragraph
    assert "On mmoe, beyond noise (two-sided paired t-test over seeds, p < 0.05), methods beat tuned equal " \
           "weighting: pcgrad on a auc (+0.0300, p = 0)." in p
    assert "uw on" not in p
    # every MMoE row is better than f2 in both columns (f2: AUC 0.76 but log loss 0.27)
    assert "beyond: pcgrad, uw, ew. pcgrad, uw, ew lie beyond it." in p
    # Δm of ew by hand: seed means shifted by the noise's mean e (AUC +e, log loss -e/2), e = 0.000125:
    # ((0.750125 - 0.700125) / 0.700125 + (0.2999375 - 0.2499375) / 0.2999375) / 2 = 11.906%
    assert "Beating single-task (significantly better on a metric, worse on none; two-sided paired t-test over " \
           "seeds, p < 0.05): mmoe + ew (Δm +11.91%), mmoe + pcgrad (Δm +14.05%), mmoe + uw (Δm +11.91%)." in p
    assert table.extra_columns == ["tuned: grid → chosen", "vs front", "HV"]
    # single-task against the group's only front: f1 is better in both columns
    assert table.rows[0].extra[:2] == ["not tuned", "inside"]
    assert table.rows[1].extra[0] == "learning_rate ∈ {0.001, 0.003} → 0.001†; selected over 2 seeds"


def test_paragraph_says_plainly_when_nothing_beats_anything():
    cells = [_cell("stl", 0.80, 0.20, "ew", "single_task"), _tuned(_cell("ew", 0.75, 0.25, "ew")),
             _tuned(_cell("same", 0.75, 0.25, "uw")), _cell("f1", 0.76, 0.24, "fixed")]
    p = report.build_table(cells, metrics=M).paragraph
    assert "On mmoe, no method of 1 beats tuned equal weighting on any metric beyond noise" in p
    assert "inside: uw, ew" in p and "No method lies beyond it." in p
    assert "): no multi-task row. Losing to it that way: mmoe + ew (Δm -15.63%), mmoe + uw (Δm -15.63%)." in p


def test_paragraph_names_a_method_rows_variant():
    """Two rows of one method (defaults, and its own hyperparameter tuned) are told apart by the variant."""
    variant = _tuned(_cell("pcgrad_c", 0.78, 0.25))
    variant.variant = "c tuned"
    cells = [_cell("stl", 0.80, 0.20, "ew", "single_task"), _tuned(_cell("ew", 0.75, 0.25, "ew")),
             _tuned(_cell("pcgrad", 0.75, 0.25)), variant, _cell("f1", 0.74, 0.26, "fixed")]
    p = report.build_table(cells, metrics=M).paragraph
    assert "methods beat tuned equal weighting: pcgrad (c tuned) on a auc (+0.0300, p = 0)." in p
    assert "beyond: pcgrad, pcgrad (c tuned), ew." in p
    assert "The best method point's hypervolume is" in p and "(pcgrad (c tuned))" in p


def test_bad_grids_and_tune_from_are_refused_before_training():
    from mtl.bench.cli import BenchError, _configs
    from mtl.bench.grid import Benchmark, CellSpec
    from mtl.bench.tuning import points

    assert points({"a": (1, 2), "b": ("x", "y", "z")})[1] == {"a": 1, "b": "y"}  # the last key varies fastest
    assert len(points({"a": (1, 2), "b": ("x", "y", "z")})) == 6
    with pytest.raises(ValueError, match=r"tune\['learning_rate'\]: expected a non-empty sequence"):
        points({"learning_rate": ()})
    config = "experiments/configs/synthetic.py:smoke"
    cagrad = CellSpec("a", config, {"balancer.name": "cagrad"}, tune={"balancer.hparams.c": (0.2, 0.4)})
    cases = [([CellSpec("f", config, {}, tune_from="zz")], "tune_from='zz' names no tuned cell of group g"),
             ([cagrad, CellSpec("f", config, {"balancer.name": "fixed"}, tune_from="a")],
              "tune_from='a' tunes only balancer hyperparameters")]
    for cells, why in cases:
        bench = Benchmark("t", {"g": cells}, seeds=2)
        with pytest.raises(BenchError, match=f"cell g/f: {why}"):
            _configs(bench, list(bench.cells()), None)


def test_a_grid_trains_as_one_sweep_only_when_it_is_a_numeric_product():
    from mtl.bench.cli import _as_sweep

    grid = [{"learning_rate": a, "balancer.hparams.c": c} for a in (1e-3, 3e-3) for c in (0.2, 0.4, 0.8)]
    assert _as_sweep(grid) == {"learning_rate": [1e-3, 3e-3], "balancer.hparams.c": [0.2, 0.4, 0.8]}
    assert _as_sweep(grid[:-1]) is None  # not the full product
    assert _as_sweep(grid[:1]) is None  # one point: an ordinary run
    assert _as_sweep([{"balancer.hparams.weights": (1.0, 0.0)}, {"balancer.hparams.weights": (0.5, 0.5)}]) is None


def test_simplex_grid_by_hand_and_its_interior():
    assert simplex(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    assert simplex(2, 0.5, interior=True) == [(0.5, 0.5)]
    assert len(simplex(4, 1 / 3)) == 20 and all(0.0 in w for w in simplex(4, 1 / 3))  # no interior at all
    inner = simplex(4, 1 / 7, interior=True)  # 7 parts in 4 positive shares: C(6, 3) vectors
    assert len(inner) == 20 and len(set(inner)) == 20
    assert all(min(w) >= 1 / 7 - 1e-9 and abs(sum(w) - 1) < 1e-9 for w in inner)
    assert np.allclose(inner[0], (1 / 7, 1 / 7, 1 / 7, 4 / 7)) and np.allclose(inner[-1], (4 / 7, 1 / 7, 1 / 7, 1 / 7))
    with pytest.raises(ValueError, match="does not divide 1"):
        simplex(2, 0.3)


def test_own_hyperparameter_rows_are_named_labelled_and_tuned_with_the_rate():
    grids = {"cagrad": ("c", (0.2, 0.5)), "famo": ("gamma", (1e-4, 1e-3))}
    cells = own_hparam_rows("cfg.py", "mmoe", grids, rates=(1e-3, 3e-3), extra={"epochs": 2})
    assert [c.name for c in cells] == ["mmoe__cagrad_c", "mmoe__famo_gamma"]
    assert [c.overrides["label"] for c in cells] == ["c tuned", "gamma tuned"]
    assert cells[0].tune == {"learning_rate": (1e-3, 3e-3), "balancer.hparams.c": (0.2, 0.5)}
    assert cells[1].overrides["balancer.name"] == "famo" and cells[1].overrides["epochs"] == 2
    assert "diagnostics" in cells[0].overrides and "diagnostics" not in cells[1].overrides  # CAGrad takes gradients
    assert own_hparam_rows("cfg.py", "mmoe", {}, rates=(1e-3,)) == [] and own_hparam_text({}) == ""
    text = ", and in a second row tuned with the rate (cagrad c on {0.2, 0.5}; famo gamma on {0.0001, 0.001})"
    assert own_hparam_text(grids) == text
