"""Datasets as in-memory columns (:class:`MultiTaskData`), built by name.

    data = mtl.data.load("synthetic", correlation=0.9, seed=0)

``LOADERS`` maps a dataset name to a function returning :class:`MultiTaskData`
from keyword arguments.
"""

from __future__ import annotations

from typing import Callable

from mtl.data.base import MultiTaskData, Split, TaskSpec
from mtl.data.synthetic import load_synthetic

LOADERS: dict[str, Callable[..., MultiTaskData]] = {
    "synthetic": load_synthetic,
}


def load(name: str, **kwargs) -> MultiTaskData:
    """Loads dataset ``name`` with loader-specific keyword arguments."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](**kwargs)


__all__ = ["LOADERS", "MultiTaskData", "Split", "TaskSpec", "load"]
