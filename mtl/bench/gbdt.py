"""A gradient-boosted-tree baseline: one sklearn ``HistGradientBoostingClassifier`` per task.

    data = mtl.data.load("census_income", data_dir="../shared/data", task_group=1, protocol="test_split")
    result = fit_evaluate(data, Settings(seed=0))      # {"tasks": [{"task": ..., "test": {"auc": ...}}], ...}

The model sees the same splits and columns as the networks (:class:`MultiTaskData`):

* **Encoding** (:func:`encode`): a categorical field whose ``vocab_size`` is at most
  ``max_bins`` (255, HGB's limit for native categorical splits) is passed as a native
  categorical feature (its codes, out-of-vocabulary bucket 0 included); a larger one (user,
  video, author, music ids) becomes one numeric column, by ``high_cardinality``:
  ``"frequency"`` (default), the number of training rows holding the row's id (no labels
  are used; unseen and rare ids share bucket 0's count), or ``"ordinal"``, the id code
  itself. Numeric columns are used as stored.
* **Iterations** (:func:`fit_task`): sklearn's early stopping on the *validation split*
  passed explicitly (``X_val``; no internal split, ``validation_fraction`` unused), on
  validation log-loss with ``patience`` iterations (``n_iter_no_change``), at most
  ``max_iter``; then the iteration count is the first one with the highest validation AUC
  (:func:`mtl.metrics.auc`, on ``staged_decision_function``) among those fitted, and
  validation and test are scored at that count.
* **Metrics**: :func:`mtl.metrics.evaluate` on the logits (``decision_function``), with
  GAUC where the split has users and the F1 thresholds chosen on validation, as for the
  networks. Binary tasks only.

Deterministic for a seed: HGB draws random numbers only for feature subsampling and its
own validation split, and neither is used here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time

import numpy as np

try:
    from sklearn.ensemble import HistGradientBoostingClassifier
except ImportError as e:  # a dev dependency (make install has it)
    raise ImportError("mtl.bench.gbdt needs scikit-learn: run `make install` or pip install -e '.[dev]'") from e

from mtl import metrics
from mtl.data.base import MultiTaskData

HIGH_CARDINALITY = ("frequency", "ordinal")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The model's settings (``HistGradientBoostingClassifier`` arguments of the same names, except
    ``patience`` = ``n_iter_no_change`` and ``high_cardinality``, see the module docstring)."""

    learning_rate: float = 0.05
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 0.0
    max_iter: int = 1000
    patience: int = 50
    max_bins: int = 255
    high_cardinality: str = "frequency"
    seed: int = 0

    def __post_init__(self):
        if self.high_cardinality not in HIGH_CARDINALITY:
            raise ValueError(f"high_cardinality must be one of {HIGH_CARDINALITY}, got {self.high_cardinality!r}")


@dataclasses.dataclass
class Encoded:
    """The feature matrices of every split (``float64``, categorical columns first), which columns
    are native categorical, and each column's ``(name, encoding)``."""

    features: dict[str, np.ndarray]
    categorical_mask: np.ndarray
    columns: tuple[tuple[str, str], ...]


def encode(data: MultiTaskData, settings: Settings) -> Encoded:
    """The model's features of every split; see *Encoding* in the module docstring."""
    splits = data.splits()
    blocks = {name: [] for name in splits}
    mask, columns = [], []
    for j, (name, vocab) in enumerate(zip(data.categorical_names, data.vocab_sizes)):
        if vocab <= settings.max_bins:
            kind, table = "native categorical", np.arange(vocab, dtype=np.float64)
        elif settings.high_cardinality == "frequency":
            kind, table = "training frequency", np.bincount(data.train.categorical[:, j], minlength=vocab).astype(float)
        else:
            kind, table = "ordinal code", np.arange(vocab, dtype=np.float64)
        for split_name, split in splits.items():
            blocks[split_name].append(table[split.categorical[:, j]])
        mask.append(kind == "native categorical")
        columns.append((name, kind))
    for j, name in enumerate(data.numeric_names):
        for split_name, split in splits.items():
            blocks[split_name].append(split.numeric[:, j].astype(np.float64))
        mask.append(False)
        columns.append((name, "numeric"))
    n = {k: len(s) for k, s in splits.items()}
    features = {k: np.stack(b, axis=1) if b else np.zeros((n[k], 0)) for k, b in blocks.items()}
    return Encoded(features, np.array(mask, bool), tuple(columns))


def fit_task(x_train, y_train, x_val, y_val, categorical_mask, settings: Settings):
    """``(model, iterations, validation AUC per iteration)`` for one binary task; ``iterations`` is the
    first count with the highest validation AUC (see *Iterations* in the module docstring)."""
    model = HistGradientBoostingClassifier(
        learning_rate=settings.learning_rate, max_iter=settings.max_iter, max_leaf_nodes=settings.max_leaf_nodes,
        min_samples_leaf=settings.min_samples_leaf, l2_regularization=settings.l2_regularization,
        max_bins=settings.max_bins, categorical_features=categorical_mask, early_stopping=True, scoring="loss",
        n_iter_no_change=settings.patience, random_state=settings.seed,
    )  # fmt: skip
    model.fit(x_train, y_train, X_val=x_val, y_val=y_val)
    curve = np.array([metrics.auc(y_val, s) for s in model.staged_decision_function(x_val)])
    return model, int(np.argmax(curve)) + 1, curve


def logits_at(model: HistGradientBoostingClassifier, x: np.ndarray, iterations: int) -> np.ndarray:
    """The model's logits on ``x`` using its first ``iterations`` trees."""
    for i, scores in enumerate(model.staged_decision_function(x), 1):
        if i == iterations:
            return scores
    raise ValueError(f"the model has fewer than {iterations} iterations")


def fit_evaluate(data: MultiTaskData, settings: Settings) -> dict:
    """Fits one model per task of ``data`` and scores validation and test with :func:`mtl.metrics.evaluate`.

    Returns ``{"rows": {split: n}, "columns": ((name, encoding), ...), "tasks": [{"task", "iterations",
    "fitted_iterations", "seconds", "validation": metrics, "test": metrics}, ...]}``.
    """
    for task in data.tasks:
        if task.kind != "binary":
            raise ValueError(f"gbdt baseline: task {task.name!r} is {task.kind}; only binary tasks are supported")
    enc = encode(data, settings)
    x = enc.features
    tasks = []
    for t, name in enumerate(data.task_names):
        start = time.perf_counter()
        y = {k: s.labels[:, t] for k, s in data.splits().items()}
        model, iterations, _ = fit_task(x["train"], y["train"], x["validation"], y["validation"],
                                        enc.categorical_mask, settings)  # fmt: skip
        scored = {}
        thresholds = None
        for split in ("validation", "test"):
            s = getattr(data, split)
            logits = logits_at(model, x[split], iterations)
            scored[split] = metrics.evaluate(s.labels[:, t], logits, [name], ["binary"], thresholds=thresholds,
                                             users=s.users)[name]  # fmt: skip
            thresholds = {name: scored[split]["threshold"]}
        tasks.append({"task": name, "iterations": iterations, "fitted_iterations": int(model.n_iter_),
                      "seconds": time.perf_counter() - start, **scored})  # fmt: skip
    return {"rows": {k: len(s) for k, s in data.splits().items()}, "columns": enc.columns, "tasks": tasks}


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

TABLE_COLUMNS = ("task group", "task", "iterations", "fitted", "validation auc", "test auc", "test gauc",
                 "test logloss", "seconds")  # fmt: skip


def table_rows(groups: dict[str, dict]) -> list[dict]:
    """One row per (task group, task) of ``{group: fit_evaluate(...)}``, keyed by :data:`TABLE_COLUMNS`;
    GAUC is NaN where the split has no users."""
    return [{"task group": group, "task": r["task"], "iterations": r["iterations"],
             "fitted": r["fitted_iterations"], "validation auc": r["validation"]["auc"], "test auc": r["test"]["auc"],
             "test gauc": r["test"].get("gauc", float("nan")), "test logloss": r["test"]["logloss"],
             "seconds": r["seconds"]}
            for group, result in groups.items() for r in result["tasks"]]  # fmt: skip


def _cell(value) -> str:
    if isinstance(value, float):
        return "—" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def render_markdown(title: str, header: list[str], groups: dict[str, dict]) -> str:
    """The table as Markdown: ``# title``, the ``header`` lines as a list, then one row per task
    (AUC, GAUC and log-loss to 4 decimals, seconds to 1, ``—`` for a missing GAUC)."""
    rule = "|" + "---|" * 2 + "---:|" * (len(TABLE_COLUMNS) - 2)
    lines = [f"# {title}", "", *(f"- {h}" for h in header), "", "| " + " | ".join(TABLE_COLUMNS) + " |", rule]
    for row in table_rows(groups):
        cells = [_cell(row[c]) for c in TABLE_COLUMNS[:-1]] + [f"{row['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_csv(groups: dict[str, dict], extra: dict[str, str]) -> str:
    """The table as CSV: :data:`TABLE_COLUMNS` at full precision, then the ``extra`` columns (e.g. the
    dataset, seed and commit) repeated on every row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*TABLE_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for row in table_rows(groups):
        writer.writerow({**{c: repr(v) if isinstance(v, float) else v for c, v in row.items()}, **extra})
    return out.getvalue()


__all__ = ["Encoded", "Settings", "encode", "fit_evaluate", "fit_task", "logits_at", "render_csv",
           "render_markdown", "table_rows"]
