"""Main job (`make run`): the MMoE paper's synthetic experiment (Ma et al., KDD 2018, Fig. 4).

Trains Shared-Bottom (parameter-matched to MMoE: 113 hidden units; and the
paper's small 16-unit variant), OMoE and MMoE on the synthetic two-task
regression data at task correlations rho = 1.0, 0.9, 0.5, several seeds each,
and writes to ``--outdir`` (default ``results/synthetic/``):

* ``table.md`` / ``table.json``: final training loss and test loss at the best
  validation epoch (mean +- std over seeds, both tasks averaged), parameter
  counts, and which of the paper's orderings hold;
* ``loss_curves.png``: training-loss curves per model and correlation.

    python -m experiments.synthetic_sweep --outdir=results/synthetic
    python -m experiments.synthetic_sweep --smoke --outdir=/tmp/syn   # seconds

Each run's config.json / metrics.jsonl / summary.json go to ``--rundir``.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import app, flags

from experiments.configs.synthetic import get_config
from mtl.cli import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("outdir", "results/synthetic", "Where the table and figure go.")
flags.DEFINE_string("rundir", "runs/synthetic", "Where each run's files go.")
flags.DEFINE_integer("seeds", 3, "Seeds per (model, correlation).")
flags.DEFINE_integer("epochs", 30, "Epochs per run.")
flags.DEFINE_integer("num_train", 100_000, "Training rows (the field notes: >= 100k for test-loss claims).")
flags.DEFINE_bool("smoke", False, "Tiny data and 2 epochs: checks the pipeline in seconds.")

CORRELATIONS = (1.0, 0.9, 0.5)
MODELS = {
    # label: (model name, hparams)
    "Shared-Bottom (113, matched)": ("shared_bottom", {"bottom_hidden": (113,)}),
    "Shared-Bottom (16, small)": ("shared_bottom", {"bottom_hidden": (16,)}),
    "OMoE": ("omoe", {}),
    "MMoE": ("mmoe", {}),
}


def run_grid(seeds, epochs, num_train, rundir):
    results = {}
    for label, (model, hparams) in MODELS.items():
        for rho in CORRELATIONS:
            for seed in range(seeds):
                c = get_config()
                c.model.name = model
                c.model.hparams = hparams
                c.data.correlation = rho
                c.data.seed = seed
                c.data.num_train = num_train
                c.data.num_validation = max(1000, num_train // 10)
                c.data.num_test = max(1000, num_train // 10)
                c.seed = seed
                c.epochs = epochs
                wd = pathlib.Path(rundir) / f"{model}_{'x'.join(map(str, hparams.get('bottom_hidden', ())))}rho{rho}_s{seed}"
                s = train_and_evaluate(c, wd, progress=False)
                results[(label, rho, seed)] = {
                    "train_curve": [float(np.mean(list(r["train_loss"].values()))) for r in s["history"]],
                    "test_curve": [float(np.mean([m["mse"] for m in r["test"].values()])) for r in s["history"]],
                    "final_train": float(np.mean(list(s["history"][-1]["train_loss"].values()))),
                    "best_test": float(np.mean([m["mse"] for m in s["test"].values()])),
                    "best_epoch": s["best_epoch"],
                    "num_params": s["num_params"],
                    "seconds": s["train_seconds"],
                }
                print(f"{label:30s} rho={rho:.1f} seed={seed}: train {results[(label, rho, seed)]['final_train']:.4f} "
                      f"test {results[(label, rho, seed)]['best_test']:.4f} ({s['train_seconds']:.1f} s)", flush=True)
    return results


def summarise(results, seeds):
    rows = []
    for label in MODELS:
        for rho in CORRELATIONS:
            tr = np.array([results[(label, rho, s)]["final_train"] for s in range(seeds)])
            te = np.array([results[(label, rho, s)]["best_test"] for s in range(seeds)])
            rows.append({"model": label, "rho": rho, "params": results[(label, rho, 0)]["num_params"],
                         "train_mean": tr.mean(), "train_std": tr.std(), "test_mean": te.mean(), "test_std": te.std()})
    return rows


def orderings(rows):
    """Checks the paper's claims on the summary rows; returns lines of text."""
    get = {(r["model"], r["rho"]): r for r in rows}
    sb, om, mm = "Shared-Bottom (113, matched)", "OMoE", "MMoE"
    lines = []
    for metric in ("train", "test"):
        for rho in (0.9, 0.5):
            v = {m: get[(m, rho)][f"{metric}_mean"] for m in (sb, om, mm)}
            order = " < ".join(sorted(v, key=v.get))
            holds = v[mm] < v[om] < v[sb]
            lines.append(f"- {metric} loss, rho={rho}: {order} -> paper's MMoE < OMoE < Shared-Bottom "
                         f"{'HOLDS' if holds else 'does NOT hold'}")
        deg = {m: get[(m, 0.5)][f"{metric}_mean"] - get[(m, 1.0)][f"{metric}_mean"] for m in (sb, om, mm)}
        order = " < ".join(f"{m} ({deg[m]:+.3f})" for m in sorted(deg, key=deg.get))
        holds = deg[mm] < deg[om] < deg[sb]
        lines.append(f"- {metric} loss increase from rho=1.0 to 0.5: {order} -> paper's 'MMoE degrades least, "
                     f"Shared-Bottom most' {'HOLDS' if holds else 'does NOT hold'}")
        pair = [rho for rho in (0.9, 0.5) if get[(mm, rho)][f"{metric}_mean"] < get[(om, rho)][f"{metric}_mean"]]
        lines.append(f"- {metric} loss, MMoE < OMoE at rho<1: holds at rho in {pair or 'none'} of (0.9, 0.5)")
        small = "Shared-Bottom (16, small)"
        worst = [rho for rho in CORRELATIONS
                 if get[(small, rho)][f"{metric}_mean"] == max(get[(m, rho)][f"{metric}_mean"] for m in MODELS)]
        lines.append(f"- {metric} loss, the small 16-unit Shared-Bottom is worst at rho in {worst or 'none'}")
    return lines


def write_outputs(results, rows, lines, outdir, seeds, epochs, num_train, seconds):
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    md = [
        "# MMoE synthetic experiment (Ma et al., KDD 2018)",
        "",
        f"Regenerate: `make run` (= `python -m experiments.synthetic_sweep --outdir={outdir}`). "
        f"{num_train:,} training rows, {max(1000, num_train // 10):,} validation and test rows, "
        f"{epochs} epochs, Adam 1e-3, batch 128, seeds 0..{seeds - 1} (data and model seeded alike); "
        "generator constants d=100, c=1, m=10, alpha_k=k, beta_k=(k-1)^2, noise 0.01. "
        "Loss = MSE averaged over the two tasks. 'train' is the last epoch's mean training loss; "
        "'test' is test MSE at the best validation epoch. Mean +- std over seeds.",
        "",
        "| model | params | " + " | ".join(f"train rho={r}" for r in CORRELATIONS) + " | "
        + " | ".join(f"test rho={r}" for r in CORRELATIONS) + " |",
        "|---|---:|" + "---:|" * (2 * len(CORRELATIONS)),
    ]
    for label in MODELS:
        rs = [r for r in rows if r["model"] == label]
        md.append(f"| {label} | {rs[0]['params']:,} | "
                  + " | ".join(f"{r['train_mean']:.3f} ± {r['train_std']:.3f}" for r in rs) + " | "
                  + " | ".join(f"{r['test_mean']:.3f} ± {r['test_std']:.3f}" for r in rs) + " |")
    md += ["", "## The paper's orderings", ""] + lines
    md += ["", f"Wall time of the sweep: {seconds:.0f} s on this machine (CPU).", ""]
    (outdir / "table.md").write_text("\n".join(md))
    (outdir / "table.json").write_text(json.dumps(
        {"rows": rows, "orderings": lines, "seeds": seeds, "epochs": epochs, "num_train": num_train,
         "curves": {f"{k[0]}|{k[1]}|{k[2]}": {"train": v["train_curve"], "test": v["test_curve"]}
                    for k, v in results.items()}}, indent=1))
    plot(results, seeds, outdir / "loss_curves.png")
    return "\n".join(md)


def plot(results, seeds, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CORRELATIONS), figsize=(5 * len(CORRELATIONS), 4), sharey=True)
    for ax, rho in zip(axes, CORRELATIONS):
        for label in MODELS:
            curves = np.array([results[(label, rho, s)]["train_curve"] for s in range(seeds)])
            ax.plot(np.arange(1, curves.shape[1] + 1), curves.mean(0), label=label)
        ax.set_title(f"correlation {rho}")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss (MSE, mean of 2 tasks)")
    axes[-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(_):
    seeds, epochs, num_train = FLAGS.seeds, FLAGS.epochs, FLAGS.num_train
    if FLAGS.smoke:
        seeds, epochs, num_train = 2, 2, 2000
    t0 = time.perf_counter()
    results = run_grid(seeds, epochs, num_train, FLAGS.rundir)
    rows = summarise(results, seeds)
    lines = orderings(rows)
    print(write_outputs(results, rows, lines, FLAGS.outdir, seeds, epochs, num_train, time.perf_counter() - t0))


if __name__ == "__main__":
    app.run(main)
