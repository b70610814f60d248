"""What a tuned or front-carrying table adds: the tuning and front columns, and the paragraph.

:func:`add_columns` is called by :func:`mtl.bench.report.build_table`; a group with
no tuned cell and no ``fixed`` cell gets nothing (its table stays as before).

The paragraph (:func:`paragraph`) says, from the numbers:

1. per model, whether any method beats (tuned) equal weighting of that model: the
   table's two-sided paired t-tests over seeds (p < alpha), with the difference of means;
2. per model with a scalarization front, which methods are beyond, on or inside it
   (:func:`mtl.bench.front.classify`) and the hypervolumes of the front and of the best method;
3. which multi-task rows beat single-task: significantly better (two-sided paired
   t-test) on at least one metric and significantly worse on none; and which lose to it
   the same way.

Each says plainly when nothing does.
"""

from __future__ import annotations

import math

import numpy as np

from mtl.bench import front as fr
from mtl.bench.stats import compare_to_ew
from mtl.bench.tuning import EDGE_MARK

TUNED, FRONT, HV = "tuned: grid → chosen", "vs front", "HV"


def add_columns(table, *, alpha: float, min_pairs: int) -> None:
    """Adds the tuning column (when a cell is tuned) and the front columns (when a model has
    ``fixed`` cells) to ``table``, their legend and notes, and the paragraph."""
    cells = [r.cell for r in table.rows]
    tuned = any(c.tuning is not None for c in cells)
    fronts = fr.fronts(cells)
    if not tuned and not fronts:
        return
    legend = []
    if tuned:
        table.extra_columns.append(TUNED)
        for r in table.rows:
            t = r.cell.tuning
            r.extra.append("not tuned" if t is None else
                           f"{t.text()}; selected over {len(t.tune_seeds)} seeds" if not t.source else t.text())
        legend.append(_tuning_legend(cells))
    hv = {}
    if fronts:
        table.extra_columns += [FRONT, HV]
        metrics = front_metrics(table.metrics)
        ref = fr.reference_point(cells, metrics, table.split)
        for r in table.rows:
            c = r.cell
            own = _front_of(c, fronts)
            if c.balancer == fr.FRONT_BALANCER:
                rel = "front point"
            elif own is None:
                rel = "—"
            else:
                rel = fr.classify(c, own, metrics, table.split, alpha).relation
            hv[c.name] = fr.hypervolume([fr.oriented(c, metrics, table.split)], ref)
            r.extra += [rel, f"{hv[c.name]:.3g}"]
        front_hv = {m: fr.hypervolume(np.stack([fr.oriented(c, metrics, table.split) for c in f]), ref)
                    for m, f in fronts.items()}
        oriented = ", ".join(f"{'' if m.higher_is_better else '−'}{m.label}" for m in metrics)
        table.notes.append(f"Hypervolume reference point ({oriented}) = ({', '.join(f'{x:.6g}' for x in ref)}): "
                           f"the componentwise minimum of the seed-mean points of every row but the front's vertices "
                           f"(a zero weight: that task untrained) minus {fr.MARGIN:.0%} of the range; "
                           + "; ".join(f"{m}'s scalarization front ({len(fronts[m])} fixed weightings): HV {v:.3g}"
                                       for m, v in front_hv.items()) + ".")
        legend.append(f"{FRONT}: the row against its model's scalarization front (the fixed-weighting rows but the "
                      "vertices, whose zero weight leaves a task untrained; the only front when its model has none): "
                      "inside when some front point is better in every metric by a "
                      f"one-sided paired t-test over seeds (p < {alpha:g}) and it is better than none, beyond when it "
                      "is better than some front point in every metric that way and none is better than it, else on; "
                      f"untested with fewer than {fr.MIN_PAIRS} common seeds; both over each task's first metric "
                      f"column. {HV}: hypervolume of the row's point over the same columns (reference point in the "
                      "notes).")
    table.legend = " ".join(legend)
    table.paragraph = paragraph(table, alpha=alpha, min_pairs=min_pairs, front_hv=front_hv if fronts else {},
                                point_hv=hv)


def front_metrics(metrics):
    """The columns the front, its test and the hypervolumes use: each task's first column."""
    return list({m.task: m for m in reversed(metrics)}.values())[::-1]


def _front_of(cell, fronts):
    if cell.model in fronts:
        return fronts[cell.model]
    return next(iter(fronts.values())) if len(fronts) == 1 else None


def _tuning_legend(cells) -> str:
    finals = sorted({len(c.seeds) for c in cells})
    tune_seeds = sorted({len(c.tuning.tune_seeds) for c in cells if c.tuning is not None and not c.tuning.source})
    return (f"{TUNED}: each tuned row's values chosen on validation, the point with the highest mean over "
            f"{'/'.join(map(str, tune_seeds))} selection seeds of the run's own selection score (mean validation AUC "
            "when every task is binary, else minus the mean standardised validation loss), then that point retrained "
            f"with the final seeds (n = {'/'.join(map(str, finals))}); a row tuned \"from\" another took that row's "
            f"choice. {EDGE_MARK}: the chosen value is on the grid's edge (the optimum may lie outside the grid).")


def _name(cell) -> str:
    """A method row's name in the paragraph: its balancer, and its variant (``cagrad (c tuned)``) when it has one."""
    return f"{cell.balancer} ({cell.variant})" if cell.variant else cell.balancer


def _methods(rows, model):
    return [r for r in rows if r.cell.model == model and not r.cell.is_ew and r.cell.balancer != fr.FRONT_BALANCER]


def paragraph(table, *, alpha: float, min_pairs: int, front_hv: dict, point_hv: dict) -> str:
    """The summary sentences described in the module docstring."""
    rows, metrics, split = table.rows, table.metrics, table.split
    test = f"two-sided paired t-test over seeds, p < {alpha:g}"
    out = []
    models = list(dict.fromkeys(r.cell.model for r in rows if not r.cell.is_stl))
    for model in models:
        ew = next((r for r in rows if r.cell.model == model and r.cell.is_ew), None)
        methods = _methods(rows, model)
        if ew is None or not methods:
            continue
        what = "tuned equal weighting" if ew.cell.tuning is not None else "equal weighting"
        better, worse = [], []
        for r in methods:
            for m, st in zip(metrics, r.stats):
                d = st.mean - ew.stats[metrics.index(m)].mean
                item = f"{_name(r.cell)} on {m.label} ({d:+.4f}, p = {st.vs_ew.p:.3g})"
                (better if st.vs_ew.mark > 0 else worse if st.vs_ew.mark < 0 else []).append(item)
        if better:
            out.append(f"On {model}, beyond noise ({test}), methods beat {what}: {'; '.join(better)}.")
        else:
            out.append(f"On {model}, no method of {len(methods)} beats {what} on any metric beyond noise ({test}).")
        if worse:
            out.append(f"Worse than {what}: {'; '.join(worse)}.")
    fronts = fr.fronts([r.cell for r in rows])
    for model, hv in front_hv.items():
        rel = {}
        for r in _methods(rows, model) + [r for r in rows if r.cell.model == model and r.cell.is_ew]:
            rel.setdefault(r.extra[table.extra_columns.index(FRONT)], []).append(_name(r.cell))
        parts = [f"{k}: {', '.join(v)}" for k, v in rel.items()]
        beyond = rel.get("beyond", [])
        s = (f"Against {model}'s scalarization front ({len(fronts[model])} fixed weightings, hypervolume {hv:.3g}; "
             f"one-sided paired t-tests in every metric, p < {alpha:g}): " + ("; ".join(parts) or "no method row")
             + ". " + (f"{', '.join(beyond)} lie{'s' if len(beyond) == 1 else ''} beyond it."
                       if beyond else "No method lies beyond it."))
        scored = [(point_hv[r.cell.name], _name(r.cell)) for r in _methods(rows, model)]
        if scored:
            h, name = max(scored)
            s += f" The best method point's hypervolume is {h:.3g} ({name}), {h / hv:.1%} of the front's." if hv > 0 \
                else ""
        out.append(s)
    stl = next((r for r in rows if r.cell is table.stl), None)
    if stl is not None:
        wins, losses = [], []
        for r in rows:
            if r.cell.is_stl or r.cell.balancer == fr.FRONT_BALANCER:
                continue
            marks = [compare_to_ew(r.cell, stl.cell, m, split, alpha=alpha, min_pairs=min_pairs).mark for m in metrics]
            dm = f"Δm {100 * r.delta_m:+.2f}%" if math.isfinite(r.delta_m) else "Δm —"
            if max(marks) > 0 and min(marks) >= 0:
                wins.append(f"{r.cell.label} ({dm})")
            elif min(marks) < 0 and max(marks) <= 0:
                losses.append(f"{r.cell.label} ({dm})")
        out.append(f"Beating single-task (significantly better on a metric, worse on none; {test}): "
                   + (", ".join(wins) if wins else "no multi-task row") + "."
                   + (f" Losing to it that way: {', '.join(losses)}." if losses else ""))
    return " ".join(out)
