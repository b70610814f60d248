"""The in-memory, columnar form every dataset is loaded into.

A loader (synthetic generator, dataset builder, generic tabular reader) returns
a :class:`MultiTaskData`: three :class:`Split` s of plain numpy columns plus the
task and feature descriptions the models need. The train loop moves each split
to the device once and gathers batches there (``mtl.train``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

TASK_KINDS = ("binary", "regression")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One prediction task: its name and whether it is binary or regression."""

    name: str
    kind: str  # "binary" or "regression"

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")


@dataclasses.dataclass
class Split:
    """One split as columns: ``numeric (N, F_num) float32``,
    ``categorical (N, F_cat) int32`` (ids in ``[0, vocab_size)``) and
    ``labels (N, T) float32``."""

    numeric: np.ndarray
    categorical: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        n = self.labels.shape[0]
        for name in ("numeric", "categorical"):
            a = getattr(self, name)
            if a.ndim != 2 or a.shape[0] != n:
                raise ValueError(f"split column block {name!r} has shape {a.shape}, expected ({n}, F)")
        if self.labels.ndim != 2:
            raise ValueError(f"labels must be (N, T), got {self.labels.shape}")
        self.numeric = np.ascontiguousarray(self.numeric, np.float32)
        self.categorical = np.ascontiguousarray(self.categorical, np.int32)
        self.labels = np.ascontiguousarray(self.labels, np.float32)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"numeric": self.numeric, "categorical": self.categorical, "labels": self.labels}

    def take(self, idx: np.ndarray) -> "Split":
        return Split(self.numeric[idx], self.categorical[idx], self.labels[idx])


@dataclasses.dataclass
class MultiTaskData:
    """A prepared multi-task dataset: train/validation/test splits and metadata.

    Attributes:
      tasks: one :class:`TaskSpec` per label column, in label order.
      numeric_names, categorical_names: feature names in column order.
      vocab_sizes: embedding table size of each categorical field (including
        any out-of-vocabulary bucket).
      info: free-form provenance recorded in summaries (e.g. ``protocol``).
    """

    train: Split
    validation: Split
    test: Split
    tasks: tuple[TaskSpec, ...]
    numeric_names: tuple[str, ...] = ()
    categorical_names: tuple[str, ...] = ()
    vocab_sizes: tuple[int, ...] = ()
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        t = len(self.tasks)
        for split_name in ("train", "validation", "test"):
            s = getattr(self, split_name)
            if s.labels.shape[1] != t:
                raise ValueError(
                    f"{split_name} split has {s.labels.shape[1]} label columns but {t} tasks were declared"
                )
            if s.numeric.shape[1] != len(self.numeric_names):
                raise ValueError(f"{split_name}: {s.numeric.shape[1]} numeric columns, {len(self.numeric_names)} names")
            if s.categorical.shape[1] != len(self.categorical_names):
                raise ValueError(
                    f"{split_name}: {s.categorical.shape[1]} categorical columns, {len(self.categorical_names)} names"
                )
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
