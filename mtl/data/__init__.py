"""Datasets as in-memory columns (:class:`MultiTaskData`), built by name (:data:`LOADERS`)::

    data = mtl.data.load("synthetic", correlation=0.9, seed=0)
"""

from __future__ import annotations

from collections.abc import Callable

from mtl.data.ali_ccp import load_ali_ccp
from mtl.data.aliexpress import load_aliexpress
from mtl.data.base import MultiTaskData, Split, TaskSpec
from mtl.data.census_income import load_census_income
from mtl.data.errors import DataError
from mtl.data.kuairand_pure import load_kuairand_pure
from mtl.data.synthetic import load_synthetic
from mtl.data.tabular import load_tabular

LOADERS: dict[str, Callable[..., MultiTaskData]] = {
    "synthetic": load_synthetic,
    "census_income": load_census_income,
    "ali_ccp": load_ali_ccp,
    "aliexpress": load_aliexpress,
    "tabular": load_tabular,
    "kuairand_pure": load_kuairand_pure,
}


def load(name: str, **kwargs) -> MultiTaskData:
    """Loads dataset ``name`` with loader-specific keyword arguments."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](**kwargs)


__all__ = ["LOADERS", "DataError", "MultiTaskData", "Split", "TaskSpec", "load"]
