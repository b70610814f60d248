"""The columnar form every loader returns: a :class:`MultiTaskData` of three :class:`Split` s of numpy
columns plus the task and feature descriptions the models need."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np

TASK_KINDS = ("binary", "regression")

#: Regression label transforms, ``name -> (forward on the file's values >= 0, inverse to reporting units)``
#: applied before standardisation; ``log1p_seconds_from_ms`` takes milliseconds and reports seconds.
LABEL_TRANSFORMS = {
    "log1p": (np.log1p, np.expm1),
    "log1p_seconds_from_ms": (lambda y: np.log1p(np.asarray(y, np.float64) / 1000.0), np.expm1),
}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One prediction task: name, ``kind`` (binary or regression) and label scale: regression labels may be
    stored as ``(transform(y) - label_mean) / label_std`` (``label_transform`` of :data:`LABEL_TRANSFORMS`),
    undone by :meth:`to_original_units`; binary ones stay 0/1 (``docs/data.md``, *Preprocessing rules*)."""

    name: str
    kind: str  # "binary" or "regression"
    label_mean: float = 0.0
    label_std: float = 1.0
    label_transform: str = ""

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")
        if not (self.label_std > 0 and abs(self.label_std) < float("inf")):
            raise ValueError(f"task {self.name!r}: label_std must be positive and finite, got {self.label_std!r}")
        if self.kind == "binary" and (self.label_mean, self.label_std) != (0.0, 1.0):
            raise ValueError(f"task {self.name!r}: binary labels are stored as 0/1 (label_mean 0, label_std 1)")
        if self.label_transform and (self.kind != "regression" or self.label_transform not in LABEL_TRANSFORMS):
            raise ValueError(f"task {self.name!r}: label_transform {self.label_transform!r} needs a regression task "
                             f"and one of {sorted(LABEL_TRANSFORMS)}")

    @property
    def standardized(self) -> bool:
        return (self.label_mean, self.label_std) != (0.0, 1.0)

    def to_original_units(self, values):
        """Stored labels or predictions back in the data's units: ``label_mean + label_std * values``,
        then the inverse of ``label_transform``."""
        values = self.label_mean + self.label_std * values
        return LABEL_TRANSFORMS[self.label_transform][1](values) if self.label_transform else values


def original_units(tasks, values: np.ndarray) -> np.ndarray:
    """``(N, T)`` stored labels or predictions with every regression column in its original units
    (:meth:`TaskSpec.to_original_units`); binary columns unchanged."""
    values = np.array(values, np.float64)
    for t, task in enumerate(tasks):
        if task.kind == "regression":
            values[:, t] = task.to_original_units(values[:, t])
    return values


@dataclasses.dataclass
class Split:
    """One split as C-contiguous columns: ``numeric (N, F_num) float32``, ``categorical (N, F_cat) int32``
    (ids in ``[0, vocab_size)``), ``labels (N, T) float32`` and optional ``users (N,) int64`` (a user code
    per row for per-user metrics, kept on the host); possibly read-only memory maps of a cache."""

    numeric: np.ndarray
    categorical: np.ndarray
    labels: np.ndarray
    users: np.ndarray | None = None

    def __post_init__(self):
        n = self.labels.shape[0]
        for name, dtype, ndim in (("numeric", np.float32, 2), ("categorical", np.int32, 2), ("labels", np.float32, 2),
                                  ("users", np.int64, 1)):  # fmt: skip
            a = getattr(self, name)
            if a is not None and (a.ndim != ndim or a.shape[0] != n):
                raise ValueError(f"split array {name!r} has shape {a.shape}, expected {ndim} dimensions and {n} rows")
            setattr(self, name, None if a is None else np.ascontiguousarray(a, dtype))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays a train step consumes (``users`` is not among them)."""
        return {"numeric": self.numeric, "categorical": self.categorical, "labels": self.labels}

    def take(self, idx: np.ndarray) -> Split:
        users = None if self.users is None else self.users[idx]
        return Split(self.numeric[idx], self.categorical[idx], self.labels[idx], users)


@dataclasses.dataclass
class MultiTaskData:
    """Train/validation/test splits plus one :class:`TaskSpec` per label column, the feature names in column
    order, each categorical field's embedding table size (out-of-vocabulary bucket included) and ``info``,
    free-form provenance recorded in summaries (e.g. ``protocol``)."""

    train: Split
    validation: Split
    test: Split
    tasks: tuple[TaskSpec, ...]
    numeric_names: tuple[str, ...] = ()
    categorical_names: tuple[str, ...] = ()
    vocab_sizes: tuple[int, ...] = ()
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        widths = {"labels": self.tasks, "numeric": self.numeric_names, "categorical": self.categorical_names}
        for (split_name, s), (name, names) in itertools.product(self.splits().items(), widths.items()):
            if getattr(s, name).shape[1] != len(names):
                raise ValueError(f"{split_name} split has {getattr(s, name).shape[1]} {name} columns but "
                                 f"{len(names)} {'tasks' if name == 'labels' else 'names'} were declared")  # fmt: skip
        if len(self.vocab_sizes) != len(self.categorical_names):
            raise ValueError("one vocab size per categorical field is required")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def task_kinds(self) -> tuple[str, ...]:
        return tuple(t.kind for t in self.tasks)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "validation": self.validation, "test": self.test}
