"""The scalarization front: fixed task weightings (balancer ``fixed``) of a model against its methods.

For each model with ``fixed`` cells, those cells' test metrics (seed means) are its
scalarization front. Everything is compared in sign-corrected metric space
(every metric oriented so that higher is better: lower-is-better metrics negated).

* :func:`hypervolume`: the volume dominated by a set of points above a reference point
  (exact: 2-D by sorting, more dimensions by slicing along the last axis).
* :func:`reference_point`: the componentwise minimum of the seed-mean points of single-task, the
  methods and the front's interior weightings, minus ``MARGIN`` of the componentwise range. The
  front's vertices (a weighting with a zero weight, whose task is not trained at all) are left out:
  their untrained task sits near chance and would put the reference so low that every reasonable
  point gets nearly the same volume (they still count in the front's hypervolume where above it).
* :func:`classify`: against the front's interior points (vertices left out, as above), a method
  is *inside* the front when some front point is better in every
  metric by a one-sided paired t-test over seeds (p < ``ALPHA``) and it is better than no front
  point that way, *beyond* when it is better than some front point in every metric and no
  front point is better than it, else *on* (and *untested* with fewer than ``MIN_PAIRS`` common seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtl.bench.results import CellResults, MetricSpec
from mtl.bench.stats import ALPHA, MIN_PAIRS, paired_t_test

FRONT_BALANCER = "fixed"
MARGIN = 0.1


def hypervolume(points, ref) -> float:
    """The volume of the union of the boxes ``[ref, p]`` (maximisation); points not above ``ref``
    in some coordinate add nothing."""
    pts = np.asarray(points, np.float64).reshape(-1, len(ref))
    ref = np.asarray(ref, np.float64)
    pts = pts[np.all(pts > ref, axis=1)]
    return _hv(pts, ref) if len(pts) else 0.0


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(pts[:, 0].max() - ref[0])
    if pts.shape[1] == 2:
        total, top = 0.0, ref[1]
        for x, y in sorted(map(tuple, pts), key=lambda p: (-p[0], -p[1])):
            if y > top:
                total += (x - ref[0]) * (y - top)
                top = y
        return float(total)
    levels = sorted(set(pts[:, -1]), reverse=True) + [ref[-1]]
    return float(sum((hi - lo) * _hv(pts[pts[:, -1] >= hi][:, :-1], ref[:-1]) for hi, lo in zip(levels, levels[1:])))


def oriented(cell: CellResults, metrics: Sequence[MetricSpec], split: str = "test") -> np.ndarray:
    """The seed means of ``metrics``, each times its sign (higher is better)."""
    return np.array([m.sign * cell.mean(m, split) for m in metrics], np.float64)


def reference_point(cells: Sequence[CellResults], metrics: Sequence[MetricSpec], split: str = "test") -> np.ndarray:
    """Componentwise minimum of the oriented means of the cells that are not a front vertex (:func:`is_vertex`)
    minus ``MARGIN`` of the range (of 1e-3 when flat); all cells when every one is a vertex."""
    pts = np.stack([oriented(c, metrics, split) for c in without_vertices(cells)])
    lo, hi = np.nanmin(pts, axis=0), np.nanmax(pts, axis=0)
    return lo - np.where(hi > lo, MARGIN * (hi - lo), 1e-3)


def is_vertex(cell: CellResults) -> bool:
    """A fixed weighting with a zero weight: some task is not trained at all."""
    weights = ((cell.config.get("balancer") or {}).get("hparams") or {}).get("weights")
    return cell.balancer == FRONT_BALANCER and bool(weights) and min(weights) <= 0


def without_vertices(cells: Sequence[CellResults]) -> list[CellResults]:
    """``cells`` but the front vertices (:func:`is_vertex`); all of them when every one is a vertex."""
    return [c for c in cells if not is_vertex(c)] or list(cells)


def better_one_sided(a: CellResults, b: CellResults, spec: MetricSpec, split: str = "test",
                     min_pairs: int = MIN_PAIRS) -> float:
    """One-sided p-value of "``a`` is better than ``b`` in ``spec``" by a paired t-test over their common
    seeds; NaN with fewer than ``min_pairs`` of them."""
    sa, sb = a.per_seed(spec, split), b.per_seed(spec, split)
    common = [s for s in sorted(set(sa) & set(sb)) if math.isfinite(sa[s]) and math.isfinite(sb[s])]
    if len(common) < min_pairs:
        return math.nan
    t, p = paired_t_test([spec.sign * sa[s] for s in common], [spec.sign * sb[s] for s in common])
    if not math.isfinite(p):
        return math.nan
    return p / 2 if t > 0 else 1 - p / 2


def dominates(a: CellResults, b: CellResults, metrics: Sequence[MetricSpec], split: str = "test",
              alpha: float = ALPHA) -> bool | None:
    """``a`` better than ``b`` in every metric (one-sided paired t-tests, each p < alpha); None when untestable."""
    ps = [better_one_sided(a, b, m, split) for m in metrics]
    if any(not math.isfinite(p) for p in ps):
        return None
    return all(p < alpha for p in ps)


@dataclass(frozen=True)
class Verdict:
    """A method against its model's front: ``relation`` and the front cells behind it."""

    relation: str  # beyond | on | inside | untested
    dominated_by: tuple[str, ...] = ()
    dominates: tuple[str, ...] = ()


def classify(cell: CellResults, front: Sequence[CellResults], metrics: Sequence[MetricSpec], split: str = "test",
             alpha: float = ALPHA) -> Verdict:
    """beyond / on / inside ``front`` by the test in the module docstring, against the front's interior points
    (its vertices, with a task left untrained, are beaten by any reasonable point: that is not being beyond)."""
    front = without_vertices(front)
    over = [dominates(f, cell, metrics, split, alpha) for f in front]
    under = [dominates(cell, f, metrics, split, alpha) for f in front]
    if any(x is None for x in over + under):
        return Verdict("untested")
    by = tuple(f.label for f, x in zip(front, over) if x)
    of = tuple(f.label for f, x in zip(front, under) if x)
    relation = "inside" if by and not of else "beyond" if of and not by else "on"
    return Verdict(relation, by, of)


def fronts(cells: Sequence[CellResults]) -> dict[str, list[CellResults]]:
    """``{model: its fixed-weighting cells}`` for the models that have any."""
    out: dict[str, list[CellResults]] = {}
    for c in cells:
        if c.balancer == FRONT_BALANCER:
            out.setdefault(c.model, []).append(c)
    return out


def figure(cells: Sequence[CellResults], path, metrics: Sequence[MetricSpec], *, split: str = "test"):
    """Each model's front (line through its fixed weightings, sorted along the first metric; the vertices left out,
    as in :func:`classify`: a zero weight leaves a task untrained, far off the scale), each method's point with ± one
    std over seeds, and single-task; first two metric columns. None when no model has a front."""
    from mtl.bench import figures as figs

    models = fronts(cells)
    if not models or len(metrics) < 2:
        return None
    mx, my = metrics[0], metrics[1]
    fig = figs._figure(6.0, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    colors = figs._palette(len(models) + len(cells))
    for i, (model, front) in enumerate(models.items()):
        front = without_vertices(front)
        xs = np.array([f.mean(mx, split) for f in front])
        ys = np.array([f.mean(my, split) for f in front])
        order = np.argsort(xs)
        ax.plot(xs[order], ys[order], "-o", color=colors[i], ms=3, lw=1, label=f"{model} scalarization front")
    others = [c for c in cells if c.balancer != FRONT_BALANCER]
    for j, c in enumerate(others):
        marker = "*" if c.is_stl else "s" if c.is_ew else "o"
        ax.errorbar(c.mean(mx, split), c.mean(my, split), xerr=_nz(c.std(mx, split)), yerr=_nz(c.std(my, split)),
                    fmt=marker, ms=8 if c.is_stl else 5, color=colors[len(models) + j], capsize=2, label=c.label)
    ax.set_xlabel(figs._axis_label(mx, split, "↑" if mx.higher_is_better else "↓"))
    ax.set_ylabel(figs._axis_label(my, split, "↑" if my.higher_is_better else "↓"))
    ax.set_title("Methods against the scalarization front (mean ± std over seeds; zero weights left out)", fontsize=8)
    ax.legend(fontsize=5, ncol=2, loc="best")
    return figs._save(fig, path)


def _nz(x: float) -> float:
    return x if math.isfinite(x) else 0.0
