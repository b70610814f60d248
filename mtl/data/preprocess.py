"""From a raw :class:`~mtl.data.frame.Frame` and split indices to :class:`MultiTaskData` by the rules every loader
shares (``docs/data.md``, *Preprocessing rules*), encoded a block of rows at a time straight into a cache pack."""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from mtl.data.base import LABEL_TRANSFORMS, MultiTaskData, Split, TaskSpec
from mtl.data.cache import PackWriter
from mtl.data.errors import DataError
from mtl.data.frame import Factor, Frame

OOV_INDEX = 0
SPLIT_NAMES = ("train", "validation", "test")


def parse_fractions(split: str | Sequence[float]) -> tuple[float, ...]:
    """``"0.8,0.1,0.1"`` or a sequence -> three validated fractions that sum to 1 (within 1e-6)."""
    try:
        fractions = tuple(float(s) for s in (split_list(split) if isinstance(split, str) else split))
    except ValueError:
        raise DataError(f"split must be 3 comma-separated fractions like '0.8,0.1,0.1', got {split!r}") from None
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split must be 3 non-negative fractions summing to 1, got {split!r}")
    return fractions


def permutation_split(num_rows: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Cuts ``default_rng(seed).permutation(num_rows)`` at ``int(n * cumulative fraction)``."""
    perm = np.random.default_rng(seed).permutation(num_rows)
    cuts = [int(num_rows * c) for c in np.cumsum(fractions)[:-1]]
    return np.split(perm, cuts)


def categorical_encoder(factor: Factor, train_idx: np.ndarray, *, hash_buckets: int = 0,
                        hash_threshold: int | None = None, min_count: int = 1) -> tuple[np.ndarray, int, str]:
    """``(mapping (V,), vocab_size, how)``: ``mapping[factor.codes]`` are the model ids of a column; values seen
    fewer than ``min_count`` times in training map to :data:`OOV_INDEX` (hashed columns are not affected)."""
    counts = np.bincount(factor.codes[train_idx], minlength=factor.num_values)
    present = np.flatnonzero(counts)
    threshold = hash_buckets if hash_threshold is None else hash_threshold
    if hash_buckets > 0 and len(present) > threshold:
        values = factor.values
        buckets = np.fromiter((zlib.crc32(str(v).encode()) % hash_buckets for v in values), np.int32, len(values))
        return buckets, int(hash_buckets), f"hashed ({len(present)} train values > {threshold})"
    kept = present[counts[present] >= min_count]
    mapping = np.full(factor.num_values, OOV_INDEX, np.int32)
    mapping[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return mapping, int(len(kept) + 1), "vocabulary"


def statistics_of(train: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the non-missing training values (std of a constant column: 1)."""
    train = np.asarray(train, np.float64)
    train = train[~np.isnan(train)]
    mean, std = (float(train.mean()), float(train.std())) if train.size else (0.0, 1.0)
    if not np.isfinite(std) or std <= 1e-9 * max(1.0, abs(mean)):  # constant column (up to rounding)
        std = 1.0
    return mean, std


def _train_values(frame: Frame, names: Sequence[str], idx: np.ndarray, groups: int = 4, rows: int = 4096):
    """``(name, its values at the rows idx)`` for each of ``names``. The block's columns are gathered as whole
    rows, ``rows`` at a time, in ``groups`` passes (a quarter of the block's memory held at a time; a gather
    per column is 3x slower: benchmarks/block_layout), so that each column comes out in ``idx``'s order, as a
    gather would give it."""
    inside = [name for name in names if frame.block_view(name) is not None]
    yield from ((name, frame.numeric[name][idx]) for name in names if name not in inside)
    size, buffer = max(1, -(-len(inside) // groups)), np.empty((rows, len(frame.block_columns)), np.float32)
    for g in range(0, len(inside), size):
        group = inside[g : g + size]
        columns, out = [frame.block_view(name) for name in group], np.empty((len(group), len(idx)), np.float32)
        for a in range(0, len(idx), rows):
            b = min(a + rows, len(idx))
            np.take(frame.block, idx[a:b], axis=0, out=buffer[: b - a])
            out[:, a:b] = buffer[: b - a].T[columns]
        yield from zip(group, out)


def _as_slice(index: np.ndarray) -> np.ndarray | slice:
    """``index`` as a slice when it is a run of consecutive integers."""
    run = len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index)))
    return slice(int(index[0]), int(index[0]) + len(index)) if run else index


def _check_labels(labels: np.ndarray, tasks: Sequence[TaskSpec], frame: Frame) -> np.ndarray:
    """``labels`` with each task's ``label_transform`` applied (a copy when there is one); the first
    label of a task that is missing or not finite, negative under a transform or, for a binary task,
    not 0 or 1 raises a :class:`DataError` naming its row."""

    def first_bad(t: int, ok: np.ndarray, problem: str, hint: str = "") -> None:
        if (bad := np.flatnonzero(~ok)).size:
            path, line = frame.locate(int(bad[0]))
            value = labels[bad[0], t]
            what = "is missing" if np.isnan(value) else f"{_fmt(value)!r} {problem}"
            raise DataError(f"label value {what} ({bad.size} such rows){hint}", path=path, line=line,
                            column=tasks[t].name)  # fmt: skip

    if any(task.label_transform for task in tasks):
        labels = np.array(labels, np.float64)
    for t, task in enumerate(tasks):
        first_bad(t, np.isfinite(labels[:, t]), "is not a finite number")
        if task.label_transform:
            first_bad(t, labels[:, t] >= 0, f"is negative; label_transform {task.label_transform!r} needs values >= 0")
            labels[:, t] = LABEL_TRANSFORMS[task.label_transform][0](labels[:, t])
        if task.kind == "binary":
            first_bad(t, (labels[:, t] == 0) | (labels[:, t] == 1), f"is not 0 or 1 in binary task {task.name!r}",
                      ". Use regression_columns for a real-valued label.")
    return labels


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def build_multitask_data(frame: Frame, splits: Mapping[str, np.ndarray], *, labels: np.ndarray,
                         tasks: Sequence[TaskSpec], categorical: Sequence[str], numeric: Sequence[str], info: dict,
                         hash_buckets: int = 0, hash_threshold: int | None = None, missing_indicators: bool = False,
                         allow_single_class: bool = False, split_sources: Mapping[str, str] | None = None,
                         single_class_hint: str = "use more rows, another seed, or allow_single_class=True.",
                         users: np.ndarray | None = None, standardize_labels: bool = False, min_count: int = 1,
                         out: PackWriter, block_rows: int = 1 << 14) -> MultiTaskData:  # fmt: skip
    """Encodes ``frame``'s columns ``categorical`` and ``numeric`` (model order) and its raw ``(N, T)``
    ``labels`` with training statistics into the row indices ``splits`` (``{"train": idx, ...}``),
    written ``block_rows`` rows at a time into ``out`` as ``<split>.<array>`` and returned
    memory-mapped. ``info`` gets the vocabulary and scaling facts; ``split_sources`` (``{split:
    description}``) and ``single_class_hint`` go into errors; ``users`` are ``(N,)`` user codes
    (``Split.users``); ``standardize_labels`` stores regression labels as ``(y - mean) / std``
    (after the task's ``label_transform``), recorded in the tasks and ``info``.
    """
    labels = np.asarray(labels)
    if labels.dtype not in (np.float32, np.float64):
        labels = labels.astype(np.float64)
    labels = _check_labels(labels, tasks, frame)
    train_idx, split_sources = splits["train"], split_sources or {}
    for name in SPLIT_NAMES:
        if len(splits[name]) == 0:
            raise DataError(f"split {name!r} is empty ({split_sources.get(name, 'no source recorded')}); give it "
                            "some rows")  # fmt: skip
    binary = [t for t, task in enumerate(tasks) if task.kind == "binary"]
    for name, t in itertools.product(() if allow_single_class else SPLIT_NAMES, binary):
        values = labels[splits[name], t]
        if values.min() == values.max():
            raise DataError(f"split {name!r} ({split_sources.get(name, 'no source recorded')}, {len(values)} rows) "
                            f"has a single class for binary task {tasks[t].name!r}: every label is "
                            f"{_fmt(values[0])}. AUC is undefined; " + single_class_hint)  # fmt: skip

    encoders, vocab_sizes, encodings = [], [], {}
    for name in categorical:
        factor = frame.categorical[name]
        mapping, size, how = categorical_encoder(factor, train_idx, hash_buckets=hash_buckets,
                                                 hash_threshold=hash_threshold, min_count=min_count)  # fmt: skip
        encoders.append((factor.codes, mapping))
        vocab_sizes.append(size)
        if how != "vocabulary":
            encodings[name] = how
    facts = {name: (*statistics_of(x), np.isnan(x).any()) for name, x in _train_values(frame, numeric, train_idx)}
    scalers, stats, indicators = [], {}, {}  # indicators: {"<name>:missing": column}
    for name in numeric:
        x, (mean, std, missing) = frame.numeric[name], facts[name]
        scalers.append((x, mean, std))
        stats[name] = (round(mean, 6), round(std, 6))
        if missing_indicators and missing:
            indicators[f"{name}:missing"] = x
    num_names = list(numeric) + list(indicators)

    tasks = list(tasks)
    for t, task in enumerate(tasks):
        if standardize_labels and task.kind == "regression":
            mean, std = statistics_of(labels[train_idx, t])
            tasks[t] = dataclasses.replace(task, label_mean=mean, label_std=std)
    label_mean, label_std = (np.array([getattr(t, k) for t in tasks], np.float64) for k in ("label_mean", "label_std"))

    n_num, n_cat, n_tasks = len(num_names), len(categorical), len(tasks)
    # numeric columns in the frame's row-major block are gathered as whole rows
    in_block = [(j, i) for j, i in ((j, frame.block_view(name)) for j, name in enumerate(numeric)) if i is not None]
    block_out, block_in = (np.array(x, np.int64) for x in zip(*in_block)) if in_block else ([], [])
    block_mean, block_std = (np.array([scalers[j][k] for j in block_out], np.float64) for k in (1, 2))
    others = [j for j in range(len(scalers)) if j not in set(block_out)]
    block_out, block_in = map(_as_slice, (block_out, block_in))  # slices: 2.3-2.5x faster (block_layout)

    def encode(rows, num, cat):
        if in_block:  # in place: a missing value (the mean) becomes 0 after scaling
            v = np.take(frame.block, rows, axis=0)[:, block_in].astype(np.float64)
            v -= block_mean
            v /= block_std
            np.copyto(v, 0.0, where=np.isnan(v))
            num[:, block_out] = v
        for j in others:
            x, mean, std = scalers[j]
            v = (x[rows].astype(np.float64) - mean) / std
            num[:, j] = np.where(np.isnan(v), 0.0, v)
        for k, x in enumerate(indicators.values()):
            num[:, len(scalers) + k] = np.isnan(x[rows])
        for j, (codes, mapping) in enumerate(encoders):
            np.take(mapping, codes[rows], out=cat[j])

    parts = {}
    for split_name, idx in splits.items():
        n = len(idx)
        arrays = {"numeric": ((n, n_num), np.float32), "categorical": ((n, n_cat), np.int32),
                  "labels": ((n, n_tasks), np.float32), "users": ((n,), np.int64)}  # fmt: skip
        outputs = {k: out.add(f"{split_name}.{k}", *spec) for k, spec in arrays.items()
                   if k != "users" or users is not None}  # fmt: skip
        for start in range(0, n, block_rows):
            rows = idx[start : start + block_rows]
            num, cat = np.empty((len(rows), n_num), np.float32), np.empty((n_cat, len(rows)), np.int32)
            encode(rows, num, cat)  # cat transposed: each column contiguous
            y = ((labels[rows].astype(np.float64) - label_mean) / label_std).astype(np.float32)
            blocks = {"numeric": num, "categorical": cat.T, "labels": y}
            for k, output in outputs.items():
                output.write(users[rows] if k == "users" else blocks[k])
        parts[split_name] = Split(*(outputs[k].finish() if k in outputs else None for k in arrays))
    info = {"split_sizes": {k: len(v) for k, v in parts.items()}, **info}
    info["label_rates"] = {name: [round(float(labels[idx, t].astype(np.float32).mean()), 6) for t in range(n_tasks)]
                           for name, idx in splits.items()}  # fmt: skip
    info.update(oov_index=OOV_INDEX, numeric_train_mean_std=stats)
    if encodings:
        info["hashed_columns"] = encodings
    if any(t.standardized for t in tasks):
        info["label_standardization"] = {t.name: [t.label_mean, t.label_std] for t in tasks if t.standardized}
    return MultiTaskData(parts["train"], parts["validation"], parts["test"], tasks=tuple(tasks),
                         numeric_names=tuple(num_names), categorical_names=tuple(categorical),
                         vocab_sizes=tuple(vocab_sizes), info=info)  # fmt: skip


ESMM_TASKS = ("click", "conversion", "ctcvr")
_TASK_ALIASES = {"purchase": "conversion", "ctr": "click", "cvr": "conversion"}


def esmm_task_labels(frame: Frame, tasks: str | Sequence[str]) -> tuple[np.ndarray, list[TaskSpec]]:
    """Labels of ``tasks`` (in order, any of ``click``, ``conversion`` alias ``purchase``, and ``ctcvr``, ESMM's
    click-AND-conversion over all impressions) from the frame's numeric ``click`` and ``conversion``."""
    names = split_list(tasks)
    if not names:
        raise DataError(f"tasks must name some of {ESMM_TASKS}, got {tasks!r}")
    columns = []
    for name in names:
        canonical = _TASK_ALIASES.get(name, name)
        if canonical not in ESMM_TASKS:
            raise DataError(f"unknown task {name!r}; choose from {ESMM_TASKS} (or alias 'purchase')")
        columns.append(((frame.numeric["click"] == 1) & (frame.numeric["conversion"] == 1)).astype(np.float32)
                       if canonical == "ctcvr" else frame.numeric[canonical])  # fmt: skip
    specs = [TaskSpec(name, "binary") for name in names]
    return np.stack(columns, axis=1).astype(np.float32, copy=False), specs  # 0/1: exact in float32


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"``, ``["a", "b"]`` (names or paths), ``""`` or ``None`` -> a list of stripped names."""
    items = [] if value is None else value.split(",") if isinstance(value, str) else value
    return [str(s).strip() for s in items if str(s).strip()]
