"""Benchmark results read back from run directories: the cells of one group and their finished seeds.

Everything here reads finished runs from disk (through :mod:`mtl.rundir`);
nothing takes results from a training process's memory. The layout read
(written by ``mtl-bench`` / ``mtl-train``)::

    GROUP/<cell>/config.json           resolved config: model, balancer, data, seeds, ...
    GROUP/<cell>/summary.json          one seed: the run summary; several seeds: an aggregate
                                       with "seeds": [0, 1, ...] and "runs": {"0": "seed_0", ...}
    GROUP/<cell>/seed_<s>/summary.json, seed_<s>/metrics.jsonl   per seed (several seeds)
    GROUP/<cell>/metrics.jsonl         one seed

A run summary holds ``validation`` and ``test`` metrics (``{task: {metric: v}}``)
at the best validation epoch, ``step_seconds``, ``train_seconds``, ``model``,
``balancer``, ``dataset``, ``protocol``, ``tasks``, ``seed``, ``commit`` and
``config_hash``. :func:`collect` returns a :class:`GroupResults`: the
:class:`CellResults` with at least one finished seed (each a
:class:`SeedResult`), and what is :class:`Missing` (a cell or seed that failed,
was interrupted or never finished, with the reason :func:`mtl.rundir.run_status`
gives). :mod:`mtl.bench.report` makes tables of them, :mod:`mtl.bench.figures`
figures.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mtl.rundir import read_config, read_curves, run_status, seed_statuses

NAN = float("nan")

#: Direction of every metric ``mtl.metrics.evaluate`` reports.
HIGHER_IS_BETTER = {
    "auc": True, "gauc": True, "accuracy": True, "precision": True, "recall": True, "f1": True,
    "logloss": False, "mse": False, "mae": False, "loss": False,
}
STL_MODEL, EW_BALANCER = "single_task", "ew"
MODEL_ORDER = ("single_task", "shared_bottom", "omoe", "mmoe", "cgc", "ple")


# ---- metrics -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """One table column: ``task``'s ``metric``, and its direction."""

    task: str
    metric: str
    higher_is_better: bool

    @property
    def label(self) -> str:
        return f"{self.task} {self.metric}"

    @property
    def sign(self) -> int:
        """+1 when higher is better, −1 when lower is better: ``(−1)^l`` of Δm."""
        return 1 if self.higher_is_better else -1


def metric_spec(task: str, metric: str, higher_is_better: bool | None = None) -> MetricSpec:
    """A column for ``task``'s ``metric``; the direction comes from ``HIGHER_IS_BETTER`` unless given."""
    if higher_is_better is None:
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown direction of metric {metric!r}: pass higher_is_better "
                             f"(known: {', '.join(sorted(HIGHER_IS_BETTER))})")
        higher_is_better = HIGHER_IS_BETTER[metric]
    return MetricSpec(task, metric, bool(higher_is_better))


def primary_metrics(tasks: Mapping[str, str]) -> list[MetricSpec]:
    """The default columns: AUC for binary tasks (higher is better), MSE for regression (lower is better)."""
    out = []
    for task, kind in tasks.items():
        if kind == "binary":
            out.append(MetricSpec(task, "auc", True))
        elif kind == "regression":
            out.append(MetricSpec(task, "mse", False))
        else:
            raise ValueError(f"unknown task kind {kind!r} of task {task!r}")
    return out


# ---- reading run directories -------------------------------------------------------------------------------------


@dataclass
class SeedResult:
    """One finished seed: its summary and its per-epoch records (``metrics.jsonl``)."""

    seed: int
    path: pathlib.Path
    summary: dict
    curves: list[dict]

    def value(self, task: str, metric: str, split: str = "test") -> float:
        try:
            return float(self.summary[split][task][metric])
        except (KeyError, TypeError, ValueError):
            return NAN


@dataclass
class CellResults:
    """One grid cell (model × balancer [× variant]) and its finished seeds.

    ``runs`` maps seed -> ``SeedResult`` for the seeds that finished; seeds that
    failed or never finished are in ``GroupResults.missing``; ``planned_seeds``
    are the seeds the run directory names; ``tuning`` is how a tuned cell's
    values were chosen (:mod:`mtl.bench.tuning`; None for an untuned cell).
    ``variant`` is the config's ``label`` or ``tag`` (empty when absent); when
    two cells would share (model, balancer, variant) it is the cell's directory name.
    """

    name: str
    path: pathlib.Path
    config: dict
    model: str
    balancer: str
    runs: dict[int, SeedResult]
    variant: str = ""
    planned_seeds: list[int] = field(default_factory=list)
    tuning: object | None = None  # a tuned cell's mtl.bench.tuning.Tuning

    @property
    def seeds(self) -> list[int]:
        return sorted(self.runs)

    @property
    def label(self) -> str:
        base = f"{self.model} + {self.balancer}"
        return f"{base} ({self.variant})" if self.variant else base

    @property
    def is_stl(self) -> bool:
        return self.model == STL_MODEL

    @property
    def is_ew(self) -> bool:
        return self.balancer == EW_BALANCER

    def _first(self, key: str, default=None):
        for s in self.seeds:
            if key in self.runs[s].summary:
                return self.runs[s].summary[key]
        return default

    @property
    def tasks(self) -> dict[str, str]:
        """``{task: "binary" | "regression"}`` from the summaries."""
        return dict(self._first("tasks", {}) or {})

    @property
    def protocol(self) -> tuple[str, str]:
        """``(dataset, protocol)`` of the runs (the first seed's; ``check_same_protocol`` compares all)."""
        return str(self._first("dataset", "")), str(self._first("protocol", ""))

    def per_seed(self, spec: MetricSpec, split: str = "test") -> dict[int, float]:
        return {s: self.runs[s].value(spec.task, spec.metric, split) for s in self.seeds}

    def values(self, spec: MetricSpec, split: str = "test") -> np.ndarray:
        """The metric of every finished seed, in ``seeds`` order (NaN where a summary lacks it)."""
        return np.array([self.runs[s].value(spec.task, spec.metric, split) for s in self.seeds], np.float64)

    def mean(self, spec: MetricSpec, split: str = "test") -> float:
        v = self.values(spec, split)
        return float(np.mean(v)) if v.size else NAN

    def std(self, spec: MetricSpec, split: str = "test") -> float:
        """Sample standard deviation over seeds (ddof 1); NaN with one seed."""
        v = self.values(spec, split)
        return float(np.std(v, ddof=1)) if v.size > 1 else NAN

    def summary_mean(self, key: str) -> float:
        """Mean over seeds of a number in the run summaries (``step_seconds``, ``train_seconds``)."""
        v = [float(self.runs[s].summary[key]) for s in self.seeds
             if isinstance(self.runs[s].summary.get(key), (int, float))]
        return float(np.mean(v)) if v else NAN


@dataclass
class Missing:
    """A cell or seed without a finished summary, and why."""

    cell: str
    seed: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.cell}" + (f" seed {self.seed}" if self.seed is not None else "") + f": {self.reason}"


@dataclass
class GroupResults:
    """What ``collect`` found: the cells with at least one finished seed, and what is missing."""

    path: pathlib.Path
    cells: list[CellResults]
    missing: list[Missing]


def _read_cell(d: pathlib.Path) -> tuple[CellResults | None, list[Missing]]:
    top = run_status(d)
    if not top.finished:
        return None, [Missing(d.name, None, str(top))]
    config = read_config(d)
    runs: dict[int, SeedResult] = {}
    missing: list[Missing] = []
    statuses = seed_statuses(d)
    for seed, status in statuses.items():
        if not status.finished:
            missing.append(Missing(d.name, seed, str(status)))
        else:
            s = seed if seed is not None else 0
            runs[s] = SeedResult(s, status.path, status.summary, read_curves(status.path))
    if not runs:
        return None, missing
    first = runs[min(runs)].summary
    model = str(first.get("model") or (config.get("model") or {}).get("name", ""))
    balancer = str(first.get("balancer") or (config.get("balancer") or {}).get("name", ""))
    variant = str(config.get("label") or config.get("tag") or "")
    planned = sorted(s for s in statuses if s is not None)
    return CellResults(d.name, d, config, model, balancer, runs, variant, planned), missing


def collect(bench_dir: str | pathlib.Path) -> GroupResults:
    """Reads every cell of a group's directory (``WORKDIR/<group>``).

    A cell is a sub-directory holding ``config.json`` or ``summary.json``
    (others, e.g. where tables are written, are ignored). Cells and seeds
    that did not finish (failed, interrupted or never finished, as
    :func:`mtl.rundir.run_status` says) are listed in ``GroupResults.missing``
    with the reason; a cell with at
    least one finished seed is kept with those seeds. ``write_tables`` prints
    the missing list under the table, so nothing is dropped silently.
    """
    bench_dir = pathlib.Path(bench_dir)
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"no run directories: {bench_dir} does not exist")
    cells, missing = [], []
    for d in sorted(p for p in bench_dir.iterdir() if p.is_dir()):
        if not ((d / "config.json").exists() or (d / "summary.json").exists()) or _is_sweep(d):
            continue
        cell, miss = _read_cell(d)
        missing += miss
        if cell is not None:
            cells.append(cell)
    # cells sharing (model, balancer, variant) are told apart by their directory names
    keys: dict[tuple, list[CellResults]] = {}
    for c in cells:
        keys.setdefault((c.model, c.balancer, c.variant), []).append(c)
    for group in keys.values():
        if len(group) > 1:
            for c in group:
                c.variant = c.name
    return GroupResults(bench_dir, sort_cells(cells), missing)


def _is_sweep(d: pathlib.Path) -> bool:
    """Whether ``d`` is a sweep's directory (a tuned cell's grid trained in one program): its points are
    read by the tuning code, not as a cell."""
    try:
        return bool(json.loads((d / "config.json").read_text()).get("sweep"))
    except (OSError, ValueError, AttributeError):
        return False


def sort_cells(cells: Sequence[CellResults]) -> list[CellResults]:
    """Table order: models as in ``MODEL_ORDER`` (single-task first, then others by name),
    within a model ``ew`` first, then balancers by name, then variants."""
    def key(c: CellResults):
        m = MODEL_ORDER.index(c.model) if c.model in MODEL_ORDER else len(MODEL_ORDER)
        return (m, c.model, c.balancer != EW_BALANCER, c.balancer, c.variant != "", c.variant, c.name)

    return sorted(cells, key=key)

def find_stl(cells: Sequence[CellResults]) -> CellResults | None:
    """The single-task baseline: model ``single_task`` with balancer ``ew`` (the one without a variant if several)."""
    cands = [c for c in cells if c.is_stl and c.is_ew]
    cands.sort(key=lambda c: (c.variant != "", c.name))
    return cands[0] if cands else None


def find_ew(cell: CellResults, cells: Sequence[CellResults]) -> CellResults | None:
    """Equal weighting of the same model: the same variant if there is one, else the plain one."""
    cands = [c for c in cells if c.model == cell.model and c.is_ew]
    for c in cands:
        if c.variant == cell.variant:
            return c
    for c in cands:
        if c.variant == "":
            return c
    return None



def default_metrics(cells: Sequence[CellResults]) -> list[MetricSpec]:
    """``primary_metrics`` of the tasks of the cells (the single-task cell's first)."""
    stl = find_stl(cells)
    tasks: dict[str, str] = {}
    for c in ([stl] if stl else []) + list(cells):
        for t, k in c.tasks.items():
            tasks.setdefault(t, k)
    return primary_metrics(tasks)
