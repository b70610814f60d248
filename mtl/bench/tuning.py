"""Tuning a cell on validation: its grid of hyperparameter points, the selection, the edge marks.

A cell (:class:`mtl.bench.grid.CellSpec`) may declare ``tune={"learning_rate": (3e-4, 1e-3, 3e-3), ...}``.
``mtl-bench`` trains every point of the grid (the Cartesian product, in declared
order) with the benchmark's ``tune_seeds`` — as one sweep, every point and seed side by
side in one program, when all its keys can be swept (:func:`mtl.bench.cli.train_points`)
— picks the point whose selection
score, averaged over those seeds, is highest, and trains that point again with
the benchmark's ``seeds``: the table reports those final runs. Layout::

    GROUP/<cell>/<point>/           one run per grid point (tune_seeds), <point> = mtl.rundir.point_name(values)
    GROUP/<cell>/final/<point>/     the chosen point, trained with the final seeds

A cell with ``tune_from="<other cell>"`` trains no grid: its final run takes the
other cell's chosen values (e.g. the scalarization front at equal weighting's
tuned learning rate).

The selection score is what training used to pick each seed's best epoch
(:func:`mtl.train.selection.selection_score`), recomputed from the run summary's
``validation`` metrics at that epoch: the mean validation AUC over the binary
tasks when ``select_by`` is ``auc``, else minus the mean validation loss (log
loss, MSE divided by the squared ``label_std`` the summary's
``data_info.label_standardization`` records, 1 when it records none).
A tie goes to the earlier point in grid order. A chosen value is on the grid's
edge when the grid has at least two values for that key and the chosen one is
its smallest or largest (numbers), or its first or last (other values).
"""

from __future__ import annotations

import itertools
import math
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mtl.rundir import point_name, seed_statuses

FINAL = "final"
EDGE_MARK = "†"


def points(grid: Mapping[str, Sequence]) -> list[dict]:
    """The Cartesian product of ``grid`` (``{config path: values}``), in declared order."""
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"tune[{key!r}]: expected a non-empty sequence of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def summary_score(summary: Mapping) -> float:
    """The selection score of one seed's run summary (see the module docstring), computed by
    training's own :func:`mtl.train.selection.selection_score`; NaN when it cannot be computed."""
    from mtl.train.selection import selection_score

    tasks = summary.get("tasks") or {}
    std = (summary.get("data_info") or {}).get("label_standardization") or {}
    try:
        scales = [std[t][1] ** 2 if t in std else 1.0 for t in tasks]
        return selection_score(summary.get("validation") or {}, list(tasks.values()), list(tasks),
                               summary.get("select_by", "auc"), scales)
    except (KeyError, TypeError, ValueError, IndexError):
        return math.nan


@dataclass
class Point:
    """One grid point of a cell and the selection scores of its finished seeds."""

    values: dict
    path: pathlib.Path
    scores: dict[int, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        v = [s for s in self.scores.values() if math.isfinite(s)]
        return float(np.mean(v)) if v else math.nan


@dataclass
class Tuning:
    """What a tuned cell's table row states: the grid, its points, the chosen values, the edge keys."""

    grid: dict
    points: list[Point]
    chosen: dict | None
    edge: list[str]
    tune_seeds: list[int]
    source: str = ""  # the cell whose choice this one took (``tune_from``), else empty

    def text(self) -> str:
        """``learning_rate ∈ {0.0003, 0.001, 0.003} → 0.003†``, one clause per key."""
        if self.chosen is None:
            return "not chosen: no finished grid point"
        out = []
        for key, values in self.grid.items():
            mark = EDGE_MARK if key in self.edge else ""
            out.append(f"{_short(key)} ∈ {{{', '.join(map(_fmt, values))}}} → {_fmt(self.chosen[key])}{mark}")
        text = "; ".join(out)
        scored = sum(math.isfinite(p.score) for p in self.points)
        if scored < len(self.points):
            text += f" ({scored} of {len(self.points)} points finished)"
        return f"{text} (from {self.source})" if self.source else text


def _short(key: str) -> str:
    return key.removeprefix("balancer.hparams.").removeprefix("model.hparams.")


def _fmt(v) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(map(_fmt, v)) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def read_points(cell_dir: pathlib.Path, grid: Mapping[str, Sequence]) -> list[Point]:
    """The grid's points with the scores of the seeds finished in ``cell_dir/<point>/`` (absent: no scores)."""
    out = []
    for values in points(grid):
        p = Point(values, cell_dir / point_name(values))
        if p.path.is_dir():
            for seed, status in seed_statuses(p.path).items():
                if status.finished:
                    p.scores[seed if seed is not None else 0] = summary_score(status.summary)
                else:
                    p.missing.append(f"seed {seed}: {status}")
        else:
            p.missing.append("not trained")
        out.append(p)
    return out


def select(pts: Sequence[Point]) -> Point | None:
    """The point with the highest mean score over its seeds (the first such in grid order); None when none scored."""
    best = None
    for p in pts:
        if math.isfinite(p.score) and (best is None or p.score > best.score):
            best = p
    return best


def edge_keys(grid: Mapping[str, Sequence], chosen: Mapping) -> list[str]:
    """The keys whose chosen value is at the edge of a grid of at least two values."""
    out = []
    for key, values in grid.items():
        values = list(values)
        if len(values) < 2:
            continue
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            ends = (min(values), max(values))
        else:
            ends = (values[0], values[-1])
        if chosen[key] in ends:
            out.append(key)
    return out


def tune(cell_dir: pathlib.Path, grid: Mapping[str, Sequence], tune_seeds: Sequence[int]) -> Tuning:
    """Reads a cell's grid back from ``cell_dir`` and makes its choice."""
    pts = read_points(cell_dir, grid)
    best = select(pts)
    chosen = dict(best.values) if best is not None else None
    return Tuning(dict(grid), pts, chosen, edge_keys(grid, chosen) if chosen else [], list(tune_seeds))


def final_dir(cell_dir: pathlib.Path, chosen: Mapping) -> pathlib.Path:
    """Where the chosen point is trained with the final seeds."""
    return cell_dir / FINAL / point_name(chosen)
