"""Benchmark figures from saved run directories (PNG, matplotlib, no display needed).

Every function takes ``CellResults`` from ``mtl.bench.results.collect`` (the
runs read from disk) and writes one PNG sized for a paper column: 3.3 in wide
(6.9 in, a full page width, only when a figure has more than three metric
panels side by side), fonts of 7 pt, 200 dpi. Figures are drawn on
``matplotlib.figure.Figure`` objects (the Agg canvas), never through pyplot's
global state, so they work on a headless machine and leave the caller's
matplotlib backend alone.

* ``tradeoff``: test metric of one task against another, one point per cell
  with ±std error bars over seeds; EW cells are squares, the single-task
  baseline a black star with dashed cross-hairs; axes of lower-is-better
  metrics are inverted so that up and right are always better. With other
  than two metric columns: one dot-plot panel per metric (cells on the y axis).
* ``validation_curves``: a validation metric per epoch, mean over seeds with a
  ±std band, one panel per metric, one line per cell.
* ``task_weights``: the balancer's mean task weight per epoch (``weights`` of
  ``metrics.jsonl``), one panel per cell, one line per task.
* ``grad_cosine``: pairwise cosine of the task gradients per epoch
  (``grad_cos``, written with ``diagnostics=epoch``), one panel per task pair,
  one line per cell; skipped (returns None) when no run recorded it.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mtl.bench import publish
from mtl.bench.results import CellResults, MetricSpec, default_metrics, find_stl, sort_cells

COLUMN_WIDTH = 3.3  # inches
PAGE_WIDTH = 6.9
DPI = 200
STYLE = {
    "font.size": 7, "axes.titlesize": 7, "axes.labelsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 7, "lines.linewidth": 1.0, "lines.markersize": 4,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "legend.frameon": False,
    "savefig.dpi": DPI, "axes.grid": True, "grid.linewidth": 0.3, "grid.alpha": 0.5,
}


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path) -> pathlib.Path:
    return publish.save_figure(fig, path, DPI)


def _palette(n: int) -> list:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _model_colors(cells: Sequence[CellResults]) -> dict[str, tuple]:
    models = list(dict.fromkeys(c.model for c in cells if not c.is_stl))
    return dict(zip(models, _palette(len(models))))


def _line_styles(n: int) -> list[tuple]:
    """(colour, linestyle) per line: the palette, then the palette again dashed, dotted, ..."""
    colors = _palette(min(n, 20))
    styles = ["-", "--", ":", "-."]
    return [(colors[i % len(colors)], styles[(i // len(colors)) % len(styles)]) for i in range(n)]


def _series(cell: CellResults, get: Callable[[dict], float | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(epochs, mean, std)`` of ``get(record)`` over the cell's seeds, epoch by epoch.

    Seeds that stopped early simply contribute to fewer epochs; std (ddof 1)
    is NaN where fewer than two seeds have a value.
    """
    per_seed = []
    for s in cell.seeds:
        d = {}
        for rec in cell.runs[s].curves:
            v = get(rec)
            if v is not None and isinstance(rec.get("epoch"), int) and math.isfinite(v):
                d[rec["epoch"]] = float(v)
        per_seed.append(d)
    epochs = np.array(sorted({e for d in per_seed for e in d}), int)
    if epochs.size == 0:
        return epochs, np.zeros(0), np.zeros(0)
    m = np.array([[d.get(e, np.nan) for e in epochs] for d in per_seed])
    n = np.isfinite(m).sum(0)
    total = np.where(np.isfinite(m), m, 0.0).sum(0)
    mean = total / np.maximum(n, 1)
    dev = np.where(np.isfinite(m), m - mean, 0.0)
    std = np.where(n >= 2, np.sqrt((dev ** 2).sum(0) / np.maximum(n - 1, 1)), np.nan)
    return epochs, mean, std


def _get(*keys: str) -> Callable[[dict], float | None]:
    def get(rec: dict):
        x = rec
        for k in keys:
            if not isinstance(x, dict) or k not in x:
                return None
            x = x[k]
        return x if isinstance(x, (int, float)) else None

    return get


def _band(ax, x, mean, std, color, ls="-", label=None):
    ax.plot(x, mean, color=color, ls=ls, label=label)
    ok = np.isfinite(std)
    if ok.any():
        ax.fill_between(x, np.where(ok, mean - std, mean), np.where(ok, mean + std, mean), color=color, alpha=0.2,
                        lw=0)


def _axis_label(m: MetricSpec, split: str, arrow: str) -> str:
    return f"{split} {m.task} {m.metric} (better {arrow})"


# ---- trade-off -------------------------------------------------------------------------------------------------


def tradeoff(cells: Sequence[CellResults], path, *, metrics: Sequence[MetricSpec] | None = None, split: str = "test",
             annotate: bool | None = None) -> pathlib.Path:
    """Per-task trade-off of the cells (mean ± std over seeds).

    Two metric columns (default: the primary metric of each task): a scatter
    of one against the other. Otherwise one dot-plot panel per metric, side
    by side, cells on a shared y axis. ``annotate`` writes each point's
    balancer name beside it (default: when there are at most 16 cells).
    """
    cells = sort_cells(cells)
    metrics = list(metrics) if metrics is not None else default_metrics(cells)
    if not cells or not metrics:
        raise ValueError("tradeoff: no cells or no metrics to plot")
    with matplotlib.rc_context(STYLE):
        if len(metrics) == 2:
            fig = _scatter(cells, metrics, split, len(cells) <= 16 if annotate is None else annotate)
        else:
            fig = _dotplot(cells, metrics, split)
        return _save(fig, path)


def _marker(c: CellResults) -> tuple[str, float]:
    if c.is_stl:
        return "*", 9.0
    return ("s", 4.5) if c.is_ew else ("o", 4.0)


def _scatter(cells, metrics, split, annotate) -> Figure:
    mx, my = metrics
    colors = _model_colors(cells)
    fig = _figure(COLUMN_WIDTH, 3.0)
    ax = fig.add_subplot()
    stl = find_stl(cells)
    if stl is not None:
        ax.axvline(stl.mean(mx, split), color="0.4", ls="--", lw=0.6, zorder=1)
        ax.axhline(stl.mean(my, split), color="0.4", ls="--", lw=0.6, zorder=1)
    for c in cells:
        x, y = c.mean(mx, split), c.mean(my, split)
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        xe, ye = c.std(mx, split), c.std(my, split)
        marker, size = _marker(c)
        color = "black" if c.is_stl else colors[c.model]
        ax.errorbar(x, y, xerr=xe if math.isfinite(xe) else None, yerr=ye if math.isfinite(ye) else None,
                    fmt=marker, ms=size, color=color, mec="black" if c.is_ew else color, mew=0.6, elinewidth=0.6,
                    capsize=1.5, zorder=3 if (c.is_ew or c.is_stl) else 2)
        if annotate:
            text = "STL" if c.is_stl else c.balancer + (f" ({c.variant})" if c.variant else "")
            ax.annotate(text, (x, y), xytext=(3, 2), textcoords="offset points", fontsize=7, color=color)
    if not mx.higher_is_better:
        ax.invert_xaxis()
    if not my.higher_is_better:
        ax.invert_yaxis()
    ax.set_xlabel(_axis_label(mx, split, "→"))
    ax.set_ylabel(_axis_label(my, split, "↑"))
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    handles = [Line2D([], [], ls="", marker="o", color=col, label=m) for m, col in colors.items()]
    handles += [Line2D([], [], ls="", marker="s", color="0.7", mec="black", label="EW")]
    if stl is not None:
        handles += [Line2D([], [], ls="", marker="*", ms=8, color="black", label="single-task")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)), handletextpad=0.2,
               columnspacing=0.8)
    return fig


def _dotplot(cells, metrics, split) -> Figure:
    colors = _model_colors(cells)
    k = len(metrics)
    width = COLUMN_WIDTH if k <= 3 else PAGE_WIDTH
    height = 0.6 + 0.13 * len(cells)
    fig = _figure(width, height)
    axes = fig.subplots(1, k, sharey=True, squeeze=False)[0]
    ys = np.arange(len(cells))[::-1]
    stl = find_stl(cells)
    for ax, m in zip(axes, metrics):
        if stl is not None and math.isfinite(stl.mean(m, split)):
            ax.axvline(stl.mean(m, split), color="0.4", ls="--", lw=0.6)
        for y, c in zip(ys, cells):
            x, xe = c.mean(m, split), c.std(m, split)
            if not math.isfinite(x):
                continue
            marker, size = _marker(c)
            color = "black" if c.is_stl else colors[c.model]
            ax.errorbar(x, y, xerr=xe if math.isfinite(xe) else None, fmt=marker, ms=size * 0.8, color=color,
                        mec="black" if c.is_ew else color, mew=0.5, elinewidth=0.6, capsize=1)
        if not m.higher_is_better:
            ax.invert_xaxis()
        ax.set_xlabel(f"{m.task} {m.metric}\n(better →)")
        ax.xaxis.set_major_locator(MaxNLocator(2 if k > 1 else 4))
        ax.grid(axis="y", visible=False)
    axes[0].set_yticks(ys, [c.label for c in cells])
    axes[0].set_ylim(-0.7, len(cells) - 0.3)
    return fig


# ---- curves ----------------------------------------------------------------------------------------------------


def validation_curves(cells: Sequence[CellResults], path, *, metrics: Sequence[MetricSpec] | None = None,
                      split: str = "validation") -> pathlib.Path | None:
    """The ``split`` metric per epoch (default: validation), mean ± std over seeds; one panel per metric,
    one line per cell. None (no file) when no run has per-epoch records."""
    cells = sort_cells(cells)
    metrics = list(metrics) if metrics is not None else default_metrics(cells)
    series = {(id(c), m): _series(c, _get(split, m.task, m.metric)) for c in cells for m in metrics}
    if not any(s[0].size for s in series.values()):
        return None
    styles = _line_styles(len(cells))
    with matplotlib.rc_context(STYLE):
        fig = _figure(COLUMN_WIDTH, 0.4 + 1.5 * len(metrics) + 0.12 * math.ceil(len(cells) / 2))
        axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
        for ax, m in zip(axes, metrics):
            for c, (color, ls) in zip(cells, styles):
                e, mean, std = series[(id(c), m)]
                if e.size:
                    _band(ax, e, mean, std, color, ls, label=c.label)
            ax.set_ylabel(f"{m.task} {m.metric}")
            ax.yaxis.set_major_locator(MaxNLocator(4))
        axes[-1].set_xlabel("epoch")
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=2, handlelength=1.5, columnspacing=0.8)
        return _save(fig, path)


def task_weights(cells: Sequence[CellResults], path, *, include_ew: bool = False) -> pathlib.Path | None:
    """Mean task weight per epoch (``weights`` in metrics.jsonl), mean ± std over seeds; one panel per
    cell (two columns), one line per task, a legend of tasks below. Equal-weighting cells (single-task
    ones included), whose weights are constant, are left out unless ``include_ew``. None (no file) when
    no run recorded weights."""
    cells = [c for c in sort_cells(cells) if include_ew or not c.is_ew]
    names = list(dict.fromkeys(k for c in cells for s in c.seeds for rec in c.runs[s].curves
                               for k in (rec.get("weights") or {})))
    if not names:
        return None
    cells = [c for c in cells if any(rec.get("weights") for s in c.seeds for rec in c.runs[s].curves)]
    colors = dict(zip(names, _palette(len(names))))
    ncols = 2 if len(cells) > 1 else 1
    nrows = math.ceil(len(cells) / ncols)
    with matplotlib.rc_context(STYLE):
        fig = _figure(COLUMN_WIDTH, 0.35 + 1.15 * nrows)
        axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
        for ax, c in zip(axes, cells):
            for name in names:
                e, mean, std = _series(c, _get("weights", name))
                if e.size:
                    _band(ax, e, mean, std, colors[name], label=name)
            ax.set_title(c.label, fontsize=7, pad=2)
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        for ax in axes[len(cells):]:
            ax.set_visible(False)
        for ax in axes[(nrows - 1) * ncols:]:
            ax.set_xlabel("epoch")
        handles = [Line2D([], [], color=colors[n], label=n) for n in names]
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(names)), title="task weight")
        return _save(fig, path)


def grad_cosine(cells: Sequence[CellResults], path) -> pathlib.Path | None:
    """Pairwise cosine of the task gradients per epoch (``grad_cos``, ``"a|b"`` keys), mean ± std over
    seeds; one panel per task pair, one line per cell that recorded it. None (no file) when none did."""
    cells = sort_cells(cells)
    pairs = list(dict.fromkeys(k for c in cells for s in c.seeds for rec in c.runs[s].curves
                               for k in (rec.get("grad_cos") or {})))
    if not pairs:
        return None
    cells = [c for c in cells if any(rec.get("grad_cos") for s in c.seeds for rec in c.runs[s].curves)]
    styles = _line_styles(len(cells))
    with matplotlib.rc_context(STYLE):
        fig = _figure(COLUMN_WIDTH, 0.4 + 1.4 * len(pairs) + 0.12 * math.ceil(len(cells) / 2))
        axes = fig.subplots(len(pairs), 1, sharex=True, squeeze=False)[:, 0]
        for ax, pair in zip(axes, pairs):
            ax.axhline(0.0, color="0.4", lw=0.6, ls="--")
            for c, (color, ls) in zip(cells, styles):
                e, mean, std = _series(c, _get("grad_cos", pair))
                if e.size:
                    _band(ax, e, mean, std, color, ls, label=c.label)
            ax.set_ylabel("cos(" + pair.replace("|", ", ") + ")")
            ax.yaxis.set_major_locator(MaxNLocator(4))
        axes[-1].set_xlabel("epoch")
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncol=2, handlelength=1.5, columnspacing=0.8)
        return _save(fig, path)


def write_figures(cells: Sequence[CellResults], outdir, *, metrics: Sequence[MetricSpec] | None = None
                  ) -> dict[str, pathlib.Path]:
    """All four figures into ``outdir`` (``tradeoff.png``, ``validation_curves.png``, ``task_weights.png``,
    ``grad_cosine.png``); returns ``{name: path}`` of those written (a figure without data is skipped)."""
    outdir = pathlib.Path(outdir)
    out = {"tradeoff": tradeoff(cells, outdir / "tradeoff.png", metrics=metrics),
           "validation_curves": validation_curves(cells, outdir / "validation_curves.png", metrics=metrics),
           "task_weights": task_weights(cells, outdir / "task_weights.png"),
           "grad_cosine": grad_cosine(cells, outdir / "grad_cosine.png")}
    return {k: v for k, v in out.items() if v is not None}
