"""Benchmark tables from the results read back from run directories (:mod:`mtl.bench.results`).

Nothing here takes results from a training process's memory, so
``mtl-bench --tables-only`` re-renders a bench without training.

The table (``write_tables``): one row per cell (model × balancer), the test
metric of each task as mean ± sample std (ddof 1) over seeds, Δm against the
single-task cell, step time relative to equal weighting of the same model, and
training time. Marks:

* **best** per metric column and in the Δm column, comparing the values as
  printed (ties at the printed precision are all marked);
* ▲ / ▼: better / worse than equal weighting (``ew``) of the same model by a
  two-sided paired t-test over the seeds both cells ran (paired by seed: the
  same seed gives the same data order and initialisation family), p < 0.05;
  no mark with fewer than 3 common seeds. Noise is not a result.

Δm (Maninis et al., CVPR 2019; ``../shared/docs/field-notes.md``):
``Δm = 1/K Σ_k (−1)^{l_k} (M_k − M_STL,k) / M_STL,k`` over the K metric
columns, with seed means, ``l_k = 1`` when lower is better, and M_STL from the
``single_task`` + ``ew`` cell under the same protocol and seeds (never epoch 0
or an untrained model). Positive is better than single-task learning.

Every file is written whole or not at all (:mod:`mtl.bench.publish`).

Public API: ``delta_m``, ``paired_t_test``, ``compare_to_ew``, ``build_table``,
``write_tables``, ``render``, and, from :mod:`mtl.bench.results`, ``collect``,
``MetricSpec``, ``metric_spec``, ``primary_metrics``, ``find_stl``, ``find_ew``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtl.bench import publish
from mtl.bench.results import (
    EW_BALANCER,
    NAN,
    STL_MODEL,
    CellResults,
    GroupResults,
    MetricSpec,
    Missing,
    collect,
    default_metrics,
    find_ew,
    find_stl,
    metric_spec,
    primary_metrics,
    sort_cells,
)
from mtl.bench.stats import ALPHA, MIN_PAIRS, Comparison, compare_to_ew, paired_t_test

__all__ = ["ALPHA", "MIN_PAIRS", "DeltaMError", "Comparison", "Stat", "Row", "Table", "check_same_protocol", "delta_m",
           "paired_t_test", "compare_to_ew", "build_table", "caption", "render_markdown", "render_latex",
           "render_csv", "latex_escape", "write_tables", "saved_seed_counts", "render", "collect", "MetricSpec",
           "metric_spec", "primary_metrics", "find_stl", "find_ew", "sort_cells", "Missing"]



# ---- references: single-task (Δm) and equal weighting (significance) -------------------------------------------


class DeltaMError(ValueError):
    """Δm is not defined for this pair of cells (different seeds or protocol, missing metric)."""


def check_same_protocol(cell: CellResults, ref: CellResults) -> None:
    """Raises ``DeltaMError`` unless the runs of the two cells have the same dataset, protocol and
    tasks seed by seed (a generated dataset may be drawn per seed: then its protocol names the seed)."""
    def proto(c: CellResults):
        return {s: (str(r.summary.get("dataset", "")), str(r.summary.get("protocol", "")),
                    json.dumps(r.summary.get("tasks", {}), sort_keys=True)) for s, r in c.runs.items()}

    a, b = proto(cell), proto(ref)
    if not a or a != b:
        raise DeltaMError(f"protocol differs between {cell.label} {sorted(set(a.values()))} and {ref.label} "
                          f"{sorted(set(b.values()))} (dataset, protocol, tasks)")


def delta_m(cell: CellResults, stl_cell: CellResults, metrics: Sequence[MetricSpec], split: str = "test") -> float:
    """Δm of ``cell`` against the single-task cell, as a fraction (×100 for %).

    ``Δm = 1/K Σ_k sign_k (M_k − M_STL,k) / M_STL,k`` over ``metrics``, with M the
    mean over seeds and ``sign_k`` = +1 when higher is better, −1 when lower is
    better (Maninis et al., CVPR 2019): positive = better than single-task.

    Raises ``DeltaMError`` when the two cells' finished seeds differ, their
    protocol (dataset, protocol, tasks) differs, a baseline metric is 0 or a
    metric is missing (NaN) in either cell.
    """
    if cell.seeds != stl_cell.seeds:
        raise DeltaMError(f"seeds of {cell.label} {cell.seeds} differ from the single-task cell's {stl_cell.seeds}: "
                          "Δm needs the same seeds")
    check_same_protocol(cell, stl_cell)
    if not metrics:
        raise DeltaMError("no metrics for Δm")
    terms = []
    for spec in metrics:
        m, b = cell.mean(spec, split), stl_cell.mean(spec, split)
        if not (math.isfinite(m) and math.isfinite(b)):
            raise DeltaMError(f"{spec.label} is missing or not finite ({cell.label}: {m}, {stl_cell.label}: {b})")
        if b == 0:
            raise DeltaMError(f"{spec.label} of the single-task cell is 0: relative change undefined")
        terms.append(spec.sign * (m - b) / b)
    return float(np.mean(terms))


# ---- the table -------------------------------------------------------------------------------------------------


@dataclass
class Stat:
    """One table entry: mean ± std over seeds, and its marks."""

    mean: float
    std: float
    n: int
    best: bool = False
    vs_ew: Comparison = Comparison(0, NAN, NAN, 0)


@dataclass
class Row:
    cell: CellResults
    stats: list[Stat]
    delta_m: float = NAN  # fraction
    delta_m_note: str = ""
    delta_m_best: bool = False
    step_vs_ew: float = NAN
    train_seconds: float = NAN
    step_seconds: float = NAN
    extra: list[str] = field(default_factory=list)  # the texts of Table.extra_columns


@dataclass
class Table:
    metrics: list[MetricSpec]
    rows: list[Row]
    split: str
    decimals: list[int]
    notes: list[str]
    stl: CellResults | None
    extra_columns: list[str] = field(default_factory=list)  # tuning / scalarization front, when the group has them
    legend: str = ""  # what the extra columns mean
    paragraph: str = ""  # what the numbers show (mtl.bench.summary), when the group is tuned or has a front


def _decimals(values: Sequence[float]) -> int:
    """4 decimals, more when the column's smallest non-zero |mean| needs them for 3 significant digits."""
    v = [abs(x) for x in values if math.isfinite(x) and x != 0]
    if not v:
        return 4
    return int(min(8, max(4, -math.floor(math.log10(min(v))) + 2)))


def _mark_best(values: Sequence[float], higher: bool, decimals: int) -> list[bool]:
    r = [round(v, decimals) if math.isfinite(v) else None for v in values]
    finite = [x for x in r if x is not None]
    if not finite:
        return [False] * len(values)
    best = max(finite) if higher else min(finite)
    return [x is not None and x == best for x in r]


def build_table(cells: Sequence[CellResults], *, metrics: Sequence[MetricSpec] | None = None, split: str = "test",
                alpha: float = ALPHA, min_pairs: int = MIN_PAIRS, missing: Sequence[Missing] = ()) -> Table:
    """Everything the renderers print: per cell the stats of every metric column,
    Δm against the single-task cell, the paired tests against EW, the best
    marks, step time / EW, and notes (Δm not computable, missing runs)."""
    cells = sort_cells(cells)
    if not cells:
        raise ValueError("no finished cells to tabulate" + (
            ": " + "; ".join(map(str, missing)) if missing else ""))
    stl = find_stl(cells)
    metrics = list(metrics) if metrics is not None else default_metrics(cells)
    notes: list[str] = []
    rows = []
    for c in cells:
        ew = find_ew(c, cells)
        stats = [Stat(c.mean(m, split), c.std(m, split), len(c.seeds),
                      vs_ew=compare_to_ew(c, ew, m, split, alpha=alpha, min_pairs=min_pairs)) for m in metrics]
        row = Row(c, stats, train_seconds=c.summary_mean("train_seconds"), step_seconds=c.summary_mean("step_seconds"))
        if stl is None:
            row.delta_m_note = "no single-task cell"
        else:
            try:
                row.delta_m = delta_m(c, stl, metrics, split)
            except DeltaMError as e:
                row.delta_m_note = str(e)
                notes.append(f"Δm of {c.label} not computed: {e}")
        if ew is not None:
            es = ew.summary_mean("step_seconds")
            if math.isfinite(row.step_seconds) and math.isfinite(es) and es > 0:
                row.step_vs_ew = row.step_seconds / es
        rows.append(row)
    if stl is None:
        notes.append(f"No {STL_MODEL} + {EW_BALANCER} cell: Δm not computed.")
    decimals = [_decimals([r.stats[j].mean for r in rows]) for j in range(len(metrics))]
    for j, m in enumerate(metrics):
        for r, b in zip(rows, _mark_best([r.stats[j].mean for r in rows], m.higher_is_better, decimals[j])):
            r.stats[j].best = b
    for r, b in zip(rows, _mark_best([100 * r.delta_m for r in rows], True, 2)):
        r.delta_m_best = b
    notes += [f"Missing: {m}" for m in missing]
    table = Table(metrics, rows, split, decimals, notes, stl)
    from mtl.bench import summary

    summary.add_columns(table, alpha=alpha, min_pairs=min_pairs)
    return table


def _fmt(x: float, d: int) -> str:
    return f"{x:.{d}f}" if math.isfinite(x) else "—"


def _header_lines(cells: Sequence[CellResults], header: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(key, value)`` lines above the table: protocol, seeds, commit and config hash
    (taken from ``header``, else from the run summaries), then the other ``header`` keys."""
    header = dict(header or {})
    runs = [r for c in cells for r in c.runs.values()]

    def uniq(key):
        vals = sorted({str(r.summary[key]) for r in runs if r.summary.get(key) not in (None, "")})
        return ", ".join(vals) if vals else "unknown"

    defaults = {
        "protocol": _protocols(runs),
        "seeds": ", ".join(map(str, sorted({s for c in cells for s in c.seeds}))),
        "commit": uniq("commit"),
        "config_hash": "per cell, see table.csv",
    }
    names = {"protocol": "Protocol", "seeds": "Seeds", "commit": "Commit", "config_hash": "Config hash"}
    out = []
    for k in ("protocol", "seeds", "commit", "config_hash"):
        v = header.pop(k, None)
        if isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        out.append((names[k], str(v) if v not in (None, "") else defaults[k]))
    out += [(str(k).replace("_", " ").capitalize(), str(v)) for k, v in header.items()]
    return out


def _protocols(runs) -> str:
    """The runs' (dataset, protocol)s; data drawn per seed is summarised as one line."""
    found = sorted({f"{r.summary.get('dataset', '')} ({r.summary.get('protocol', '')})" for r in runs})
    if len(found) <= 2:
        return ", ".join(found) or "unknown"
    return f"{found[0]} ... {found[-1]} ({len(found)} protocols: the data is drawn per seed)"


def caption(table: Table, *, alpha: float = ALPHA, min_pairs: int = MIN_PAIRS) -> str:
    """The method statement printed with every table."""
    stl = f"{STL_MODEL} + {EW_BALANCER}"
    return (f"{table.split.capitalize()} metrics at the best validation epoch, mean ± sample std (ddof 1) over seeds; "
            f"n = seeds finished. Bold: best in the column at the printed precision. "
            f"▲/▼: better/worse than equal weighting ({EW_BALANCER}) of the same model by a two-sided paired t-test "
            f"over seeds (paired by seed), p < {alpha:g}; no mark with fewer than {min_pairs} common seeds. "
            f"Δm (%): mean over the metric columns of the sign-corrected relative change against {stl} under the same "
            f"protocol and seeds (Maninis et al., 2019; higher is better). Step / EW: median train-step time relative "
            f"to {EW_BALANCER} of the same model. Time: training seconds of the cell (its seeds are trained side by "
            "side in one program, so this is the time of all of them)." + (f" {table.legend}" if table.legend else ""))


def _columns(table: Table, arrow_up: str, arrow_down: str) -> list[str]:
    return (["model", "balancer", "n"]
            + [f"{m.label} {arrow_up if m.higher_is_better else arrow_down}" for m in table.metrics]
            + ["Δm (%)", "step / EW", "time (s)"] + table.extra_columns)


def _cells_text(table: Table, row: Row, *, bold, pm: str, up: str, down: str, esc=lambda s: s) -> list[str]:
    c = row.cell
    out = [esc(c.model), esc(c.balancer + (f" ({c.variant})" if c.variant else "")), str(len(c.seeds))]
    for j, st in enumerate(row.stats):
        d = table.decimals[j]
        txt = _fmt(st.mean, d)
        if math.isfinite(st.mean) and math.isfinite(st.std):
            txt += f"{pm}{_fmt(st.std, d)}"
        if st.best:
            txt = bold(txt)
        txt += up if st.vs_ew.mark > 0 else down if st.vs_ew.mark < 0 else ""
        out.append(txt)
    dm = f"{100 * row.delta_m:+.2f}" if math.isfinite(row.delta_m) else "—"
    out.append(bold(dm) if row.delta_m_best else dm)
    out.append(f"{row.step_vs_ew:.2f}" if math.isfinite(row.step_vs_ew) else "—")
    out.append(f"{row.train_seconds:.0f}" if math.isfinite(row.train_seconds) else "—")
    return out + [esc(x) for x in row.extra]


def render_markdown(table: Table, *, title: str, header_lines: Sequence[tuple[str, str]],
                    alpha: float = ALPHA, min_pairs: int = MIN_PAIRS) -> str:
    def md_esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"# {title}", ""]
    lines += [f"- {k}: {md_esc(v)}" for k, v in header_lines]
    lines += ["", caption(table, alpha=alpha, min_pairs=min_pairs), ""]
    cols = _columns(table, "↑", "↓")
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(cols) - 2)) + "|")
    for r in table.rows:
        lines.append("| " + " | ".join(_cells_text(table, r, bold=lambda s: f"**{s}**", pm=" ± ", up=" ▲",
                                                   down=" ▼", esc=md_esc)) + " |")
    if table.notes:
        lines += ["", "Notes:", ""] + [f"- {md_esc(n)}" for n in table.notes]
    if table.paragraph:
        lines += ["", "What the numbers show:", "", table.paragraph]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"Δ": r"$\Delta$", "±": r"$\pm$", "▲": r"$^{\blacktriangle}$", "▼": r"$^{\blacktriangledown}$",
                "↑": r"$\uparrow$", "↓": r"$\downarrow$", "≥": r"$\geq$", "≤": r"$\leq$", "—": "---", "–": "--",
                "×": r"$\times$", "−": "-", "∈": r"$\in$", "→": r"$\to$", "†": r"$^\dagger$", "<": "$<$",
                ">": "$>$", "|": r"$|$"}


def latex_escape(s: str) -> str:
    """Escapes LaTeX's special characters and maps the few symbols used here to math."""
    s = re.sub(r"[\\&%$#_{}~^]", lambda m: _TEX_ESCAPES[m.group()], str(s))
    return "".join(_TEX_UNICODE.get(ch, ch) for ch in s)


def render_latex(table: Table, *, title: str, header_lines: Sequence[tuple[str, str]], label: str = "tab:bench",
                 alpha: float = ALPHA, min_pairs: int = MIN_PAIRS) -> str:
    """A booktabs ``table`` float (needs ``\\usepackage{booktabs,amssymb}``), the header and method in the caption."""
    cols = _columns(table, "↑", "↓")
    head = "; ".join(f"{k}: {v}" for k, v in header_lines)
    cap = latex_escape(f"{title}. {head}. {caption(table, alpha=alpha, min_pairs=min_pairs)}")
    cap = cap.replace("Bold:", r"\textbf{Bold}:")
    lines = [f"% {latex_escape(title)}: generated by mtl.bench.report from the run directories; "
             r"needs \usepackage{booktabs,amssymb}"]
    lines += [f"% {k}: {v}" for k, v in header_lines]
    lines += [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{cap}}}", rf"\label{{{label}}}",
              r"\begin{tabular}{ll" + "r" * (len(cols) - 2) + "}", r"\toprule",
              " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    prev = None
    for r in table.rows:
        if prev is not None and r.cell.model != prev:
            lines.append(r"\midrule")
        prev = r.cell.model
        txt = _cells_text(table, r, bold=lambda s: rf"\textbf{{{s}}}", pm=r" $\pm$ ",
                          up=r"$^{\blacktriangle}$", down=r"$^{\blacktriangledown}$", esc=latex_escape)
        txt = [t.replace("—", "---") for t in txt]
        lines.append(" & ".join(txt) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    if table.notes:
        lines += ["% Notes:"] + [f"% {latex_escape(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


def _slug(m: MetricSpec) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", f"{m.task}_{m.metric}").strip("_")


def render_csv(table: Table) -> str:
    """One line per cell, full precision: for each metric column ``<task>_<metric>_{mean,std,best,vs_ew,p_vs_ew}``
    (``vs_ew`` is ``better``, ``worse`` or empty); ``delta_m_pct``, ``delta_m_best``, ``step_vs_ew``,
    ``step_seconds``, ``train_seconds``, and what was run (seeds, protocol, commit, config hash)."""
    fields = ["model", "balancer", "variant", "cell", "n_seeds", "seeds"]
    for m in table.metrics:
        s = _slug(m)
        fields += [f"{s}_mean", f"{s}_std", f"{s}_best", f"{s}_vs_ew", f"{s}_p_vs_ew", f"{s}_n_pairs"]
    fields += ["delta_m_pct", "delta_m_best", "delta_m_note", "step_vs_ew", "step_seconds", "train_seconds",
               "dataset", "protocol", "commit", "config_hash"] + table.extra_columns
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()

    def num(x: float) -> str:
        return repr(float(x)) if math.isfinite(x) else ""

    for r in table.rows:
        c = r.cell
        rec = {"model": c.model, "balancer": c.balancer, "variant": c.variant, "cell": c.name,
               "n_seeds": len(c.seeds), "seeds": " ".join(map(str, c.seeds))}
        for m, st in zip(table.metrics, r.stats):
            s = _slug(m)
            rec.update({f"{s}_mean": num(st.mean), f"{s}_std": num(st.std), f"{s}_best": int(st.best),
                        f"{s}_vs_ew": {1: "better", -1: "worse"}.get(st.vs_ew.mark, ""),
                        f"{s}_p_vs_ew": num(st.vs_ew.p), f"{s}_n_pairs": st.vs_ew.n_pairs})
        runs = [c.runs[s].summary for s in c.seeds]
        joined = lambda k: " ".join(sorted({str(x.get(k)) for x in runs if x.get(k) not in (None, "")}))
        rec.update({"delta_m_pct": num(100 * r.delta_m), "delta_m_best": int(r.delta_m_best),
                    "delta_m_note": r.delta_m_note, "step_vs_ew": num(r.step_vs_ew),
                    "step_seconds": num(r.step_seconds),
                    "train_seconds": num(r.train_seconds), "dataset": c.protocol[0], "protocol": c.protocol[1],
                    "commit": joined("commit"), "config_hash": joined("config_hash"),
                    **dict(zip(table.extra_columns, r.extra))})
        w.writerow(rec)
    return buf.getvalue()


def write_tables(cells: GroupResults | Sequence[CellResults], outdir: str | pathlib.Path, *, title: str,
                 header: Mapping[str, Any] | None = None, metrics: Sequence[MetricSpec] | None = None,
                 split: str = "test", missing: Sequence[Missing] | None = None, alpha: float = ALPHA,
                 min_pairs: int = MIN_PAIRS, label: str | None = None) -> dict[str, pathlib.Path]:
    """Writes ``table.md``, ``table.csv`` and ``table.tex`` to ``outdir`` (each rendered first, then written whole).

    Args:
      cells: a ``GroupResults`` from ``collect`` (its ``missing`` are listed under the
        table) or a list of ``CellResults``.
      title: the table's title.
      header: printed above the table: ``protocol``, ``seeds``, ``commit``,
        ``config_hash`` (each taken from the run summaries when not given),
        then any other keys in order (e.g. ``{"command": "mtl-bench ..."}``).
      metrics: the metric columns (default ``primary_metrics`` of the tasks);
        Δm is computed over the same columns.
      split: ``"test"`` (default) or ``"validation"``.
      missing: extra ``Missing`` entries to list (default: the group's).
      alpha, min_pairs: the significance level of the paired t-test and the
        fewest common seeds for a mark.
      label: the LaTeX ``\\label`` (default ``tab:<outdir name>``).

    Returns:
      ``{"md": path, "csv": path, "tex": path}``.
    """
    if isinstance(cells, GroupResults):
        missing = cells.missing if missing is None else missing
        cells = cells.cells
    table = build_table(cells, metrics=metrics, split=split, alpha=alpha, min_pairs=min_pairs, missing=missing or ())
    outdir = pathlib.Path(outdir)
    lines = _header_lines([r.cell for r in table.rows], header)
    label = label or "tab:" + re.sub(r"[^0-9A-Za-z]+", "-", outdir.resolve().name).strip("-")
    paths = {"md": outdir / "table.md", "csv": outdir / "table.csv", "tex": outdir / "table.tex"}
    texts = {"md": render_markdown(table, title=title, header_lines=lines, alpha=alpha, min_pairs=min_pairs),
             "csv": render_csv(table),
             "tex": render_latex(table, title=title, header_lines=lines, label=label, alpha=alpha, min_pairs=min_pairs)}
    for kind, text in texts.items():
        publish.write_text(paths[kind], text)
    return paths


def saved_seed_counts(outdir: str | pathlib.Path) -> dict[str, int]:
    """``{cell: seeds}`` of the ``table.csv`` that ``write_tables`` wrote to ``outdir`` (empty when none)."""
    path = pathlib.Path(outdir) / "table.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {r["cell"]: int(r["n_seeds"]) for r in csv.DictReader(f)}


def render(results: GroupResults | str | pathlib.Path, outdir: str | pathlib.Path, *, title: str,
           header: Mapping[str, Any] | None = None, metrics: Sequence[MetricSpec] | None = None,
           figures: bool = True) -> dict[str, pathlib.Path]:
    """``write_tables`` + the figures of one group: what ``mtl-bench --tables-only`` runs per group.

    ``results`` is what ``collect`` returned, or the group's directory to
    collect. Returns the written paths: ``md``, ``csv``, ``tex`` and, with
    ``figures``, ``tradeoff``, ``validation_curves``, ``task_weights``,
    ``grad_cosine``, and ``front`` when a model has a scalarization front
    (:func:`mtl.bench.front.figure`; a figure whose data no run recorded, e.g. gradient cosines
    without diagnostics, is skipped). Missing cells and seeds are listed in the tables.
    """
    if not isinstance(results, GroupResults):
        results = collect(results)
    paths = write_tables(results, outdir, title=title, header=header, metrics=metrics)
    if figures:
        from mtl.bench import figures as figs

        paths.update(figs.write_figures(results.cells, outdir, metrics=metrics))
        from mtl.bench import front, summary

        made = front.figure(results.cells, outdir / "front.png",
                            summary.front_metrics(metrics or default_metrics(results.cells)))
        if made is not None:
            paths["front"] = made
    return paths
