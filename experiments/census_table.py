"""Census-Income (KDD) table: Shared-Bottom, MMoE and PLE with equal weights.

    python -m experiments.census_table --data_dir=../shared/data --outdir=results/census_income

Task group 1 (income > 50K, never married) and group 2 (education >= college,
never married), seeds 0..2 (``--seeds``), test AUC at the best validation epoch
(mean validation AUC; early stopping with patience 5, at most 30 epochs).
The data protocol (``paper`` when census-income.data is present, else
``test_split``) is written into the table. Each run's files go to ``--rundir``.
"""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np
from absl import app, flags

from experiments.configs.census_income import get_config
from mtl.cli import train_and_evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "Folder with census_income_kdd/ (default: $MTL_DATA_DIR).")
flags.DEFINE_string("outdir", "results/census_income", "Where table.md / table.json go.")
flags.DEFINE_string("rundir", "runs/census_income", "Where each run's files go.")
flags.DEFINE_integer("seeds", 3, "Seeds per cell.")
flags.DEFINE_integer("epochs", 30, "Maximum epochs (early stopping, patience 5).")

# Sizes and training settings: experiments/configs/census_income.py.
MODELS = {"Shared-Bottom": "shared_bottom", "MMoE": "mmoe", "PLE": "ple"}
REFERENCE = {  # field notes, test_split protocol, 3 seeds
    "LightGBM (single task, field notes)": {1: (0.9507, 0.9949), 2: (0.8945, None)},
    "torch-rechub MMoE, 10 epochs (field notes)": {1: (0.9321, 0.9945), 2: (0.8791, None)},
    "torch-rechub Shared-Bottom, 10 epochs (field notes)": {1: (0.9344, 0.9945), 2: (0.8842, None)},
    "torch-rechub PLE, 10 epochs (field notes)": {1: (0.9300, 0.9945), 2: (0.8841, None)},
}


def main(_):
    t0 = time.perf_counter()
    rows, protocol = [], None
    for group in (1, 2):
        for label, model in MODELS.items():
            aucs, epochs, secs = [], [], []
            for seed in range(FLAGS.seeds):
                c = get_config(f"group{group},{model}")
                c.data.data_dir = FLAGS.data_dir
                c.seed = seed
                c.data.seed = seed
                c.epochs = FLAGS.epochs  # patience, batch size and learning rate: the config's
                s = train_and_evaluate(c, pathlib.Path(FLAGS.rundir) / f"g{group}_{model}_s{seed}", progress=False)
                protocol = s["protocol"]
                tasks = list(s["test"])
                aucs.append([s["test"][t]["auc"] for t in tasks])
                epochs.append(s["best_epoch"])
                secs.append(s["train_seconds"])
                print(f"group {group} {label:14s} seed {seed}: " + ", ".join(
                    f"{t} {a:.4f}" for t, a in zip(tasks, aucs[-1])) + f" (best epoch {s['best_epoch']})", flush=True)
            a = np.array(aucs)
            rows.append({"group": group, "model": label, "tasks": tasks, "mean": a.mean(0).tolist(),
                         "std": a.std(0).tolist(), "per_seed": a.tolist(), "best_epochs": epochs,
                         "train_seconds": float(np.mean(secs))})
    outdir = pathlib.Path(FLAGS.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    md = ["# Census-Income (KDD): test AUC, equal weighting", "",
          f"Protocol: **{protocol}**. Regenerate: `python -m experiments.census_table --data_dir=../shared/data`. "
          f"Seeds 0..{FLAGS.seeds - 1}; test AUC at the best validation epoch (mean validation AUC, patience 5, "
          f"at most {FLAGS.epochs} epochs); Adam 1e-3, batch 256; sizes in `experiments/configs/census_income.py`. "
          "Mean ± std over seeds.", "",
          "| model | income > 50K (group 1) | never married (group 1) | education ≥ college (group 2) | never married (group 2) | best epochs (g1; g2) |",
          "|---|---|---|---|---|---|"]
    for label in MODELS:
        g1 = next(r for r in rows if r["model"] == label and r["group"] == 1)
        g2 = next(r for r in rows if r["model"] == label and r["group"] == 2)
        cells = [f"{m:.4f} ± {s:.4f}" for r in (g1, g2) for m, s in zip(r["mean"], r["std"])]
        md.append(f"| {label} (ours) | " + " | ".join(cells) + f" | {g1['best_epochs']}; {g2['best_epochs']} |")
    for label, ref in REFERENCE.items():
        fmt = lambda v: "—" if v is None else f"{v:.4f}"
        md.append(f"| {label} | {fmt(ref[1][0])} | {fmt(ref[1][1])} | {fmt(ref[2][0])} | — | — |")
    md += ["", f"Wall time: {time.perf_counter() - t0:.0f} s (CPU).", ""]
    (outdir / "table.md").write_text("\n".join(md))
    (outdir / "table.json").write_text(json.dumps({"protocol": protocol, "rows": rows, "reference": {
        k: {str(g): v for g, v in ref.items()} for k, ref in REFERENCE.items()}}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    app.run(main)
