"""From a raw :class:`~mtl.data.frame.Frame` and split indices to :class:`MultiTaskData`.

The rules every loader shares:

* Statistics come from the TRAINING split only: categorical vocabularies, the
  numeric mean and standard deviation, the fill value of missing numbers.
* Categorical ids: ``0`` is the out-of-vocabulary bucket (values never seen in
  training); the training values get ``1..V`` in sorted order; ``vocab_size = V + 1``.
  A missing categorical value is its own token (:data:`MISSING_TOKEN`), so it gets
  an id when training has missing values and falls in bucket 0 otherwise.
* Optional hashing for very large vocabularies: a column whose training vocabulary
  exceeds ``hash_threshold`` distinct values is mapped with a stable hash (CRC32 of
  the UTF-8 value) into ``hash_buckets`` ids; unseen values hash like seen ones.
* Numeric columns: ``(x - mean) / std`` with training statistics (std 0 -> 1);
  a missing value becomes the training mean, i.e. 0 after scaling, and with
  ``missing_indicators`` a 0/1 column ``<name>:missing`` is added for each numeric
  column that has missing values in the training split.
* Binary tasks must have both classes in every split (else a :class:`DataError`
  naming the split and the task), unless ``allow_single_class``.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Sequence

import numpy as np

from mtl.data.base import MultiTaskData, Split, TaskSpec
from mtl.data.errors import DataError
from mtl.data.frame import Factor, Frame

OOV_INDEX = 0
MISSING_TOKEN = "<missing>"
SPLIT_NAMES = ("train", "validation", "test")


def parse_fractions(split: str | Sequence[float], *, count: int = 3) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` or a sequence -> validated fractions that sum to 1 (within 1e-6)."""
    if isinstance(split, str):
        try:
            fractions = tuple(float(s) for s in split.split(",") if s.strip())
        except ValueError:
            raise DataError(f"split must be {count} comma-separated fractions like '0.8,0.1,0.1', got {split!r}")
    else:
        fractions = tuple(float(s) for s in split)
    if len(fractions) != count or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split must be {count} non-negative fractions summing to 1, got {split!r}")
    return fractions


def permutation_split(num_rows: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Cuts ``default_rng(seed).permutation(num_rows)`` at ``int(n * cumulative fraction)``."""
    perm = np.random.default_rng(seed).permutation(num_rows)
    cuts = [int(num_rows * c) for c in np.cumsum(fractions)[:-1]]
    return np.split(perm, cuts)


def stable_hash(value: str) -> int:
    return zlib.crc32(value.encode("utf-8"))


def encode_categorical(
    factor: Factor, train_idx: np.ndarray, *, hash_buckets: int = 0, hash_threshold: int | None = None
) -> tuple[np.ndarray, int, str]:
    """Codes a column with its training vocabulary; returns ``(ids (N,), vocab_size, how)``."""
    present = np.unique(factor.codes[train_idx])
    threshold = hash_buckets if hash_threshold is None else hash_threshold
    if hash_buckets > 0 and len(present) > threshold:
        buckets = np.fromiter((stable_hash(str(v)) % hash_buckets for v in factor.values), np.int32, len(factor.values))
        return buckets[factor.codes], int(hash_buckets), f"hashed ({len(present)} train values > {threshold})"
    mapping = np.full(len(factor.values), OOV_INDEX, np.int32)
    mapping[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    return mapping[factor.codes], int(len(present) + 1), "vocabulary"


def standardize(x: np.ndarray, train_idx: np.ndarray) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Scales with training mean/std, fills missing with the mean; returns ``(z, mean, std, missing)``."""
    missing = np.isnan(x)
    train = x[train_idx]
    train = train[~np.isnan(train)]
    mean = float(train.mean()) if train.size else 0.0
    std = float(train.std()) if train.size else 1.0
    if not np.isfinite(std) or std <= 1e-9 * max(1.0, abs(mean)):  # constant column (up to rounding)
        std = 1.0
    z = (np.where(missing, mean, x) - mean) / std
    return z.astype(np.float32), mean, std, missing


def check_binary_labels(labels: np.ndarray, frame: Frame, names: Sequence[str]) -> None:
    """Every binary label must be exactly 0 or 1; names the first bad value's file and line."""
    for t, name in enumerate(names):
        col = labels[:, t]
        bad = np.flatnonzero(~((col == 0) | (col == 1)))
        if bad.size:
            path, line = frame.locate(int(bad[0]))
            value = "missing" if np.isnan(col[bad[0]]) else repr(_fmt(col[bad[0]]))
            raise DataError(
                f"label value {value} is not 0 or 1 (binary task {name!r}; {bad.size} such rows). "
                f"Use regression_columns for a real-valued label.",
                path=path,
                line=line,
                column=name,
            )


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def build_multitask_data(
    frame: Frame,
    splits: Mapping[str, np.ndarray],
    *,
    labels: np.ndarray,
    tasks: Sequence[TaskSpec],
    categorical: Sequence[str],
    numeric: Sequence[str],
    info: dict,
    hash_buckets: int = 0,
    hash_threshold: int | None = None,
    missing_indicators: bool = False,
    allow_single_class: bool = False,
    split_sources: Mapping[str, str] | None = None,
    single_class_hint: str = "use more rows, another seed, or allow_single_class=True.",
) -> MultiTaskData:
    """Encodes ``frame`` columns with training statistics and cuts the splits.

    Args:
      frame: all rows of every split.
      splits: ``{"train": idx, "validation": idx, "test": idx}`` row indices into ``frame``.
      labels: ``(N, T)`` float labels for all rows of ``frame``.
      tasks: one :class:`TaskSpec` per label column.
      categorical, numeric: feature column names, in model order.
      info: provenance to record; vocabulary and scaling facts are added.
      split_sources: optional ``{split: description}`` for error messages.
      single_class_hint: what the single-class error suggests.
    """
    labels = np.asarray(labels, np.float64)
    train_idx = splits["train"]
    binary = [t.name for t in tasks if t.kind == "binary"]
    if binary:
        cols = [i for i, t in enumerate(tasks) if t.kind == "binary"]
        check_binary_labels(labels[:, cols], frame, binary)
    for name in SPLIT_NAMES:
        if len(splits[name]) == 0:
            raise DataError(f"split {name!r} is empty ({_describe(name, split_sources)}); give it some rows")
    if not allow_single_class:
        for name in SPLIT_NAMES:
            idx = splits[name]
            for t, task in enumerate(tasks):
                if task.kind != "binary":
                    continue
                values = np.unique(labels[idx, t])
                if values.size < 2:
                    raise DataError(
                        f"split {name!r} ({_describe(name, split_sources)}, {len(idx)} rows) has a single class "
                        f"for binary task {task.name!r}: every label is {_fmt(values[0])}. AUC is undefined; "
                        + single_class_hint
                    )

    cat_cols, vocab_sizes, encodings = [], [], {}
    for name in categorical:
        ids, size, how = encode_categorical(
            frame.categorical[name], train_idx, hash_buckets=hash_buckets, hash_threshold=hash_threshold
        )
        cat_cols.append(ids)
        vocab_sizes.append(size)
        if how != "vocabulary":
            encodings[name] = how
    num_cols, num_names, stats = [], [], {}
    indicators = []
    for name in numeric:
        z, mean, std, missing = standardize(frame.numeric[name], train_idx)
        num_cols.append(z)
        num_names.append(name)
        stats[name] = (round(mean, 6), round(std, 6))
        if missing_indicators and missing[train_idx].any():
            indicators.append((f"{name}:missing", missing.astype(np.float32)))
    for name, col in indicators:
        num_cols.append(col)
        num_names.append(name)

    n = frame.num_rows
    cat_matrix = np.stack(cat_cols, axis=1) if cat_cols else np.zeros((n, 0), np.int32)
    num_matrix = np.stack(num_cols, axis=1) if num_cols else np.zeros((n, 0), np.float32)
    label_matrix = labels.astype(np.float32)
    parts = {
        name: Split(num_matrix[idx], cat_matrix[idx], label_matrix[idx]) for name, idx in splits.items()
    }
    info = dict(info)
    info.setdefault("split_sizes", {k: len(v) for k, v in parts.items()})
    info["label_rates"] = {
        name: [round(float(label_matrix[idx, t].mean()), 6) for t in range(len(tasks))]
        for name, idx in splits.items()
    }
    info["oov_index"] = OOV_INDEX
    info["numeric_train_mean_std"] = stats
    if encodings:
        info["hashed_columns"] = encodings
    return MultiTaskData(
        parts["train"],
        parts["validation"],
        parts["test"],
        tasks=tuple(tasks),
        numeric_names=tuple(num_names),
        categorical_names=tuple(categorical),
        vocab_sizes=tuple(vocab_sizes),
        info=info,
    )


def _describe(split: str, split_sources: Mapping[str, str] | None) -> str:
    if split_sources and split in split_sources:
        return split_sources[split]
    return "no source recorded"


ESMM_TASKS = ("click", "conversion", "ctcvr")
_TASK_ALIASES = {"purchase": "conversion", "ctr": "click", "cvr": "conversion"}


def esmm_task_labels(frame: Frame, tasks: str | Sequence[str]) -> tuple[np.ndarray, list[TaskSpec]]:
    """Labels for click / conversion data from the frame's numeric ``click`` and ``conversion`` columns.

    ``tasks`` picks any of ``click``, ``conversion`` (alias ``purchase``) and ``ctcvr``
    (ESMM's click-AND-conversion label over all impressions), in order.
    """
    names = split_list(tasks)
    if not names:
        raise DataError(f"tasks must name some of {ESMM_TASKS}, got {tasks!r}")
    columns, specs = [], []
    for name in names:
        canonical = _TASK_ALIASES.get(name, name)
        if canonical not in ESMM_TASKS:
            raise DataError(f"unknown task {name!r}; choose from {ESMM_TASKS} (or alias 'purchase')")
        if canonical == "ctcvr":
            col = ((frame.numeric["click"] == 1) & (frame.numeric["conversion"] == 1)).astype(np.float64)
        else:
            col = frame.numeric[canonical]
        columns.append(col)
        specs.append(TaskSpec(name, "binary"))
    return np.stack(columns, axis=1), specs


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"``, ``["a", "b"]``, ``""`` or ``None`` -> a list of stripped names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(s).strip() for s in value if str(s).strip()]
