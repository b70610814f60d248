"""The MMoE paper's view of the synthetic benchmark, from its run directories.

Called by ``mtl-bench --bench=synthetic`` (``make run``) after the generic tables;
reads the run directories ``WORKDIR/rho_<r>/<cell>/`` through :mod:`mtl.rundir`
(cells and seeds that did not finish are listed with the reason) and writes
``OUTDIR/table.md``, ``table.json`` and ``loss_curves.png``, each whole, and
never over a table of more cells or seeds unless ``replace_tables``:

* per model and correlation, the last epoch's training loss and the test loss at
  the best validation epoch (MSE averaged over the two tasks), mean ± std over seeds;
* which of the paper's claims hold (MMoE < OMoE < Shared-Bottom as rho falls;
  MMoE degrades least);
* training-loss curves with 95% confidence bands (mean ± 1.96 standard errors over seeds).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from mtl.bench import publish
from mtl.rundir import ABSENT, read_curves, run_status, seed_statuses

LABELS = {"sb113__ew": "Shared-Bottom (113, matched)", "sb16__ew": "Shared-Bottom (16, small)", "omoe__ew": "OMoE",
          "mmoe__ew": "MMoE", "single_task__ew": "Single-task (one network per task)"}


def _read(cell_dir: pathlib.Path) -> tuple[dict | None, list[str]]:
    """The finished seeds of a cell (None when none finished) and why the others did not finish."""
    runs, missing = [], []
    for seed, status in seed_statuses(cell_dir).items():
        if not status.finished:
            missing.append(f"{cell_dir.parent.name}/{cell_dir.name}" + (f" seed {seed}" if seed is not None else "")
                           + f": {status}")
            continue
        lines = read_curves(status.path)
        one = status.summary
        runs.append({"train": [float(np.mean(list(r["train_loss"].values()))) for r in lines],
                     "test_curve": [float(np.mean([m["mse"] for m in r["test"].values()])) for r in lines],
                     "best_test": float(np.mean([m["mse"] for m in one["test"].values()])),
                     "params": one["num_params"]})
    return ({"runs": runs, "wall": _wall(cell_dir)} if runs else None), missing


def _wall(cell_dir: pathlib.Path) -> float:
    p = cell_dir / "bench_wall.json"
    return json.loads(p.read_text())["wall_seconds"] if p.is_file() else float("nan")


def orderings(rows: dict) -> list[str]:
    """The paper's claims checked on ``rows[(label, rho)]``; lines of text."""
    sb, om, mm = LABELS["sb113__ew"], LABELS["omoe__ew"], LABELS["mmoe__ew"]
    rhos = sorted({r for _, r in rows}, reverse=True)
    lines = []
    for metric in ("train", "test"):
        for rho in [r for r in rhos if r < 1.0]:
            v = {m: rows[(m, rho)][f"{metric}_mean"] for m in (sb, om, mm) if (m, rho) in rows}
            if len(v) < 3:
                continue
            order = " < ".join(sorted(v, key=v.get))
            holds = v[mm] < v[om] < v[sb]
            lines.append(f"- {metric} loss, rho={rho}: {order} -> the paper's MMoE < OMoE < Shared-Bottom "
                         f"{'HOLDS' if holds else 'does NOT hold'}")
        if 1.0 in rhos and min(rhos) < 1.0 and all((m, r) in rows for m in (sb, om, mm) for r in (1.0, min(rhos))):
            lo = min(rhos)
            deg = {m: rows[(m, lo)][f"{metric}_mean"] - rows[(m, 1.0)][f"{metric}_mean"] for m in (sb, om, mm)}
            order = " < ".join(f"{m} ({deg[m]:+.3f})" for m in sorted(deg, key=deg.get))
            holds = deg[mm] < deg[om] < deg[sb]
            lines.append(f"- {metric} loss increase from rho=1.0 to {lo}: {order} -> the paper's 'MMoE degrades least, "
                         f"Shared-Bottom most' {'HOLDS' if holds else 'does NOT hold'}")
    return lines


def report(workdir, outdir, bench, *, command: str = "mtl-bench --bench=synthetic",
           replace_tables: bool = False) -> pathlib.Path:
    """Writes the paper's table, its JSON and the loss curves from the run directories under ``workdir``.

    Raises ValueError (nothing written) when no cell finished, or when the
    saved ``table.json`` holds a (model, rho) with more seeds, or one this
    table would not have, unless ``replace_tables``.
    """
    workdir, outdir = pathlib.Path(workdir), pathlib.Path(outdir)
    data, rows, missing = {}, {}, []
    for gdir in sorted(workdir.glob("rho_*")):
        rho = float(gdir.name.split("_", 1)[1])
        for cell, label in LABELS.items():
            if run_status(gdir / cell).state == ABSENT:  # not a cell of this variant (e.g. --smoke)
                continue
            r, why = _read(gdir / cell)
            missing += why
            if r is None:
                continue
            data[(label, rho)] = r
            tr = np.array([x["train"][-1] for x in r["runs"]])
            te = np.array([x["best_test"] for x in r["runs"]])
            rows[(label, rho)] = {"train_mean": tr.mean(), "train_std": tr.std(ddof=1) if len(tr) > 1 else 0.0,
                                  "test_mean": te.mean(), "test_std": te.std(ddof=1) if len(te) > 1 else 0.0,
                                  "params": r["runs"][0]["params"], "seeds": len(r["runs"])}
    if not rows:
        raise ValueError(f"no finished runs in {workdir}/rho_<r>/<cell>/ for cells {', '.join(LABELS)}"
                         + (f" ({missing[0]})" if missing else "") + "; nothing written")
    if not replace_tables:
        lost = publish.losses(_saved_seeds(outdir / "table.json"),
                              {f"{m} rho={r}": v["seeds"] for (m, r), v in rows.items()})
        if lost:
            raise ValueError(f"{outdir / 'table.json'} holds more than the runs in {workdir} give: "
                             + "; ".join(lost[:3]) + (f"; and {len(lost) - 3} more" if len(lost) > 3 else "")
                             + "; nothing written (--replace_tables replaces it anyway)")
    rhos = sorted({r for _, r in rows}, reverse=True)
    labels = [l for l in LABELS.values() if any((l, r) in rows for r in rhos)]
    lines = orderings(rows)
    seeds = max((v["seeds"] for v in rows.values()), default=0)
    wall = sum(v["wall"] for v in data.values() if np.isfinite(v["wall"]))
    md = ["# MMoE synthetic experiment (Ma et al., KDD 2018)", "",
          f"Regenerate: `{command}` (run directories in {workdir}).",
          f"{seeds} seeds per cell, trained side by side, each seed on its own draw of the data; "
          "generator constants d=100, c=1, m=10, alpha_k=k, beta_k=(k-1)^2, noise 0.01. Loss = MSE averaged over the "
          "two tasks. 'train' is the last epoch's mean training loss; 'test' is the test MSE at the best validation "
          "epoch. Mean ± std (ddof 1) over seeds.", "",
          "| model | params | " + " | ".join(f"train rho={r}" for r in rhos) + " | "
          + " | ".join(f"test rho={r}" for r in rhos) + " |",
          "|---|---:|" + "---:|" * (2 * len(rhos))]
    for label in labels:
        rs = [rows.get((label, r)) for r in rhos]
        params = next(x["params"] for x in rs if x)
        fmt = lambda x, k: f"{x[k + '_mean']:.3f} ± {x[k + '_std']:.3f}" if x else "—"  # noqa: E731
        md.append(f"| {label} | {params:,} | " + " | ".join(fmt(x, "train") for x in rs) + " | "
                  + " | ".join(fmt(x, "test") for x in rs) + " |")
    md += ["", "## The paper's orderings", ""] + lines
    if missing:
        md += ["", "## Not finished", ""] + [f"- {m}" for m in missing]
    md += ["", f"Training wall time: {wall:.0f} s for {len(data)} cells on this machine (CPU).", ""]
    publish.write_text(outdir / "table.md", "\n".join(md))
    publish.write_text(outdir / "table.json", json.dumps(
        {"rows": [{"model": k[0], "rho": k[1], **{a: float(b) for a, b in v.items()}} for k, v in rows.items()],
         "orderings": lines,
         "curves": {f"{k[0]}|{k[1]}": [x["train"] for x in v["runs"]] for k, v in data.items()}}, indent=1))
    _plot(data, rhos, labels, outdir / "loss_curves.png")
    print("\n".join(md))
    return outdir / "table.md"


def _plot(data, rhos, labels, path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.3 * len(rhos), 3.0))
    axes = fig.subplots(1, len(rhos), sharey=True, squeeze=False)[0]
    for ax, rho in zip(axes, rhos):
        for label in labels:
            if (label, rho) not in data:
                continue
            curves = np.array([x["train"] for x in data[(label, rho)]["runs"]])
            mean = curves.mean(0)
            half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
            epochs = np.arange(1, curves.shape[1] + 1)
            (line,) = ax.plot(epochs, mean, label=label, lw=1.2)
            ax.fill_between(epochs, mean - half, mean + half, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(f"correlation {rho}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (MSE, mean of 2 tasks)", fontsize=8)
    axes[-1].legend(fontsize=6)
    fig.tight_layout()
    publish.save_figure(fig, path, 200)


def _saved_seeds(path: pathlib.Path) -> dict[str, int]:
    """``{"<model> rho=<r>": seeds}`` of a saved ``table.json`` (empty when none)."""
    if not path.is_file():
        return {}
    return {f"{r['model']} rho={r['rho']}": int(r["seeds"]) for r in json.loads(path.read_text())["rows"]}
