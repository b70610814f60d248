"""The per-task gradient-boosted-tree baseline of a benchmark's dataset (:mod:`mtl.bench.gbdt`).

    python -m experiments.gbdt_baseline --dataset=kuairand_pure --data_dir=../shared/data
    python -m experiments.gbdt_baseline --dataset=census_income --data_dir=../shared/data

Loads every task group of the dataset as the networks' benchmark does (KuaiRand-Pure: ``main``,
its temporal split; Census-Income: groups 1 and 2, the ``test_split`` protocol), fits one
``HistGradientBoostingClassifier`` per task and writes ``OUTDIR/table.md`` and ``table.csv``
(default ``results/<dataset>/gbdt``) with the settings, rows per split, wall time, commit and
this command.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import sys
import time

import sklearn
import threadpoolctl

import mtl.data
from mtl.bench import gbdt, publish
from mtl.cli import HELP_FLAGS, Flag, UsageError, error, help_text, parse_flags
from mtl.data import DataError
from mtl.rundir import git_commit

#: dataset -> (the loader's task-group argument, the default groups, fixed loader arguments)
DATASETS = {
    "kuairand_pure": ("tasks", "main", {"verbose": False}),
    "census_income": ("task_group", "1,2", {"protocol": "test_split"}),
}
DEFAULTS = gbdt.Settings()
FLAGS = (
    Flag("dataset", None, f"one of {', '.join(DATASETS)}", "NAME"),
    Flag("data_dir", "", "the shared data folder (default $MTL_DATA_DIR)", "DIR"),
    Flag("task_groups", "", "comma-separated task groups (default: kuairand_pure main; census_income 1,2)", "G,G"),
    Flag("outdir", "", "where table.md and table.csv go (default results/DATASET/gbdt)", "DIR"),
    Flag("seed", str(DEFAULTS.seed), "HGB's random_state", "N"),
    Flag("learning_rate", str(DEFAULTS.learning_rate), "shrinkage per iteration", "X"),
    Flag("max_leaf_nodes", str(DEFAULTS.max_leaf_nodes), "leaves per tree", "N"),
    Flag("max_iter", str(DEFAULTS.max_iter), "most iterations per task", "N"),
    Flag("patience", str(DEFAULTS.patience), "iterations without a better validation log-loss before stopping", "N"),
    Flag("high_cardinality", DEFAULTS.high_cardinality,
         f"encoding of categorical fields with more than {DEFAULTS.max_bins} values: frequency or ordinal", "NAME"),
)
USAGE = ("gbdt_baseline: one gradient-boosted-tree model per task; test AUC (and GAUC) into a table.",
         "usage: python -m experiments.gbdt_baseline --dataset=NAME --data_dir=DIR [--task_groups=G,G] "
         "[--outdir=DIR] [--seed=N] [--learning_rate=X] [--max_leaf_nodes=N] [--max_iter=N] [--patience=N] "
         "[--high_cardinality=NAME]")  # fmt: skip


def settings_from(opts: dict) -> gbdt.Settings:
    """:class:`gbdt.Settings` from the parsed flags; a value that is not a number is a :class:`UsageError`."""
    values = {}
    for field in ("seed", "learning_rate", "max_leaf_nodes", "max_iter", "patience"):
        kind = type(getattr(DEFAULTS, field))
        try:
            values[field] = kind(opts[field])
        except ValueError:
            raise UsageError(f"--{field}={opts[field]}: expected {kind.__name__}") from None
    try:
        return gbdt.Settings(**values, high_cardinality=opts["high_cardinality"])
    except ValueError as e:
        raise UsageError(f"--high_cardinality: {e}") from None


def openmp_threads() -> int:
    """The threads HGB fits with (``OMP_NUM_THREADS``, else the CPUs this process may use)."""
    return next(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "openmp")


def header(dataset: str, data, settings: gbdt.Settings, groups: dict, wall: float, command: str) -> list[str]:
    """The table's header lines: protocol, rows, settings, encoding, stopping rule, commit, time, command."""
    first = next(iter(groups.values()))
    rows = ", ".join(f"{k} {v:,}" for k, v in first["rows"].items())
    encoded = {}
    for name, kind in first["columns"]:
        encoded.setdefault(kind, []).append(name)
    s = settings
    return [
        f"Dataset: {dataset}, protocol: " + " — ".join(dict.fromkeys(
            str(data.info[k]) for k in ("protocol", "protocol_description") if data.info.get(k))),
        f"Rows: {rows}",
        f"Model: sklearn {sklearn.__version__} HistGradientBoostingClassifier, one per task: learning_rate "
        f"{s.learning_rate}, max_leaf_nodes {s.max_leaf_nodes}, min_samples_leaf {s.min_samples_leaf}, "
        f"l2_regularization {s.l2_regularization}, max_bins {s.max_bins}, max_iter {s.max_iter}, "
        f"random_state {s.seed}",
        "Encoding: " + "; ".join(f"{kind} ({len(names)}): {', '.join(names)}" if kind != "numeric"
                                 else f"numeric ({len(names)})" for kind, names in encoded.items()),
        f"Iterations: early stopping on the validation split's log-loss (passed as X_val, no internal split), "
        f"patience {s.patience}; 'iterations' is the first count with the best validation AUC among the "
        f"'fitted' ones, and validation and test are scored there",
        "Metrics: mtl.metrics (AUC; GAUC where the data has users: per user, impression-weighted, users with one "
        "class skipped; — where it has none)",
        f"Commit: {git_commit()}",
        f"Wall time: {wall:.0f} s on {openmp_threads()} OpenMP thread(s) (loading, fitting and scoring every group)",
        f"Command: {command}",
    ]


def main(argv: list[str]) -> pathlib.Path:
    """Runs the baseline as the flags in ``argv`` (without the program name) say; returns the table's path."""
    opts = parse_flags(FLAGS, argv, "gbdt_baseline")
    dataset = opts["dataset"]
    if dataset not in DATASETS:
        raise UsageError(f"--dataset={dataset}: choose one of {', '.join(DATASETS)}")
    settings = settings_from(opts)
    group_arg, default_groups, fixed = DATASETS[dataset]
    start = time.perf_counter()
    groups, data = {}, None
    for group in (opts["task_groups"] or default_groups).split(","):
        data = mtl.data.load(dataset, data_dir=opts["data_dir"] or None, **{group_arg: group.strip()}, **fixed)
        groups[group.strip()] = gbdt.fit_evaluate(data, settings)
        for r in groups[group.strip()]["tasks"]:
            print(f"{group}/{r['task']}: test auc {r['test']['auc']:.4f} at {r['iterations']} iterations "
                  f"({r['seconds']:.1f} s)", flush=True)
    wall = time.perf_counter() - start
    command = shlex.join(["python", "-m", "experiments.gbdt_baseline", *argv])
    outdir = pathlib.Path(opts["outdir"] or f"results/{dataset}/gbdt")
    lines = header(dataset, data, settings, groups, wall, command)
    title = f"Gradient-boosted trees, one model per task — {dataset}"
    path = publish.write_text(outdir / "table.md", gbdt.render_markdown(title, lines, groups))
    extra = {"dataset": dataset, **{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
             "commit": git_commit()}  # fmt: skip
    publish.write_text(outdir / "table.csv", gbdt.render_csv(groups, extra))
    return path


if __name__ == "__main__":
    if any(a in HELP_FLAGS for a in sys.argv[1:]):
        print(help_text(USAGE, FLAGS))
        sys.exit(0)
    try:
        print(main(sys.argv[1:]))
    except (UsageError, DataError, ValueError) as e:  # a bad flag, a missing file, an unknown task group
        error(str(e))
