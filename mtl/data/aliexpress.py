"""AliExpress multi-task data (MTReclib / AITM CSV), one dataset per country: column names, file layout, the
raw reader (also the TFDS builder's, :mod:`mtl.data.builders.aliexpress`) and the loader; tasks ``click``,
``conversion`` (``purchase``), ``ctcvr``. The format and the validation cut: ``docs/data.md``, *Ali-CCP and
AliExpress*.

    data = mtl.data.load("aliexpress", data_dir=..., country="NL", tasks="click,conversion")
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from mtl.data import paths
from mtl.data.base import MultiTaskData
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.frame import Frame, file_parts
from mtl.data.preprocess import build_multitask_data, esmm_task_labels, permutation_split
from mtl.data.reader import Column, read_dataset_files

DATASET = "aliexpress"
COUNTRIES = ("NL", "ES", "FR", "US", "RU")
CATEGORICAL = tuple(f"categorical_{i}" for i in range(1, 17))
NUMERICAL = tuple(f"numerical_{i}" for i in range(1, 64))
ID_COLUMN = "search_id"
LABELS = ("click", "conversion")
SAMPLE_FILES = ("aliexpress_train_sample.csv", "aliexpress_test_sample.csv")
HOW_TO_GET = (
    "AliExpress is distributed by Alibaba Tianchi (https://tianchi.aliyun.com/dataset/74690, login required); "
    "unzip AliExpress_NL.zip etc. into $MTL_DATA_DIR/aliexpress/ (AliExpress_NL/train.csv, test.csv), "
    "or pass sample=True to read the public sample."
)
#: Raw frame columns (also the TFDS builder's columns): (categorical, numeric).
COLUMNS = ((ID_COLUMN,) + CATEGORICAL, NUMERICAL + LABELS)


def files_in(folder: pathlib.Path, country: str, sample: bool) -> dict[str, pathlib.Path] | None:
    """``{"train", "test"}`` files of a country (or the sample) in ``folder``, or ``None``."""
    sub = folder if folder.name == f"AliExpress_{country}" else folder / f"AliExpress_{country}"
    train, test = (folder / name for name in SAMPLE_FILES) if sample else (sub / "train.csv", sub / "test.csv")
    return {"train": train, "test": test} if train.is_file() and test.is_file() else None


def read_aliexpress_files(files: Sequence[str | os.PathLike], *, with_id: bool = True) -> Frame:
    """Several AliExpress CSVs (e.g. train and test) as one frame, rows file by file
    (``frame.source_ids`` says which); ``with_id=False`` skips ``search_id``."""
    columns = {c: Column("factor", integers=True) for c in (COLUMNS[0] if with_id else CATEGORICAL)}
    columns.update({c: Column("number") for c in NUMERICAL} | {c: Column("label") for c in LABELS})
    table = read_dataset_files(files, columns, what="an MTReclib AliExpress")
    table.numeric.update(table.labels)
    return table


def find_aliexpress_files(data_dir=None, *, country: str = "NL", sample: bool = False) -> dict[str, pathlib.Path]:
    """``{"train": path, "test": path}`` for a country (or the sample)."""
    country = country.upper()
    if not sample and country not in COUNTRIES:
        raise ValueError(f"country must be one of {COUNTRIES}, got {country!r}")
    folder = paths.resolve_dataset_dir(data_dir, dataset=f"AliExpress ({'sample' if sample else country})",
                                       has_files=lambda d: files_in(d, country, sample) is not None,
                                       has_sample=None if sample else lambda d: files_in(d, "NL", True) is not None,
                                       folder=DATASET, how_to_get=HOW_TO_GET, subfolders=True)  # fmt: skip
    return files_in(folder, country, sample)


def load_aliexpress(*, data_dir: str | os.PathLike | None = None, country: str = "NL", sample: bool = False,
                    tasks: str = "click,conversion", seed: int = 0, validation_fraction: float = 0.1,
                    cache_dir: str | os.PathLike | None = None, allow_single_class: bool = False,
                    user_column: str = "") -> MultiTaskData:  # fmt: skip
    """AliExpress (one ``country`` of NL, ES, FR, US, RU, or the public ``sample``) as click /
    conversion / ctcvr tasks; ``seed`` and ``validation_fraction`` cut validation from the training
    file; ``user_column`` must stay empty (no user id). The other arguments and the rules:
    ``docs/data.md``, *Ali-CCP and AliExpress*."""
    if user_column:
        raise DataError(f"AliExpress has no user column (user_column={user_column!r}); leave it empty")
    files = find_aliexpress_files(data_dir, country=country, sample=sample)
    sources = list(files.values())
    country = None if sample else country.upper()
    args = dict(country=country, sample=bool(sample), tasks=tasks, seed=seed, validation_fraction=validation_fraction,
                allow_single_class=bool(allow_single_class))  # fmt: skip

    def build(out):
        frame = read_aliexpress_files([files["train"], files["test"]], with_id=False)  # one frame, file by file
        train_rows, test_rows = file_parts(frame)
        keep, held = permutation_split(len(train_rows), (1 - validation_fraction, validation_fraction), seed)
        splits = {"train": train_rows[keep], "validation": train_rows[held], "test": test_rows}
        labels, specs = esmm_task_labels(frame, tasks)
        info = {"dataset": DATASET, "country": country, "sample": bool(sample),
                "protocol": (f"train.csv permuted with default_rng({seed}), {validation_fraction:g} held out for "
                             "validation; test.csv is the test split"),
                "seed": seed, "files": {k: str(v) for k, v in files.items()}, "dropped_columns": [ID_COLUMN],
                "user_column": None}  # fmt: skip
        split_sources = {"train": str(files["train"]), "validation": f"part of {files['train']}",
                         "test": str(files["test"])}  # fmt: skip
        return build_multitask_data(frame, splits, labels=labels, tasks=specs, categorical=list(CATEGORICAL),
                                    numeric=list(NUMERICAL), info=info, allow_single_class=allow_single_class,
                                    split_sources=split_sources, out=out)  # fmt: skip

    return cached_dataset(paths.cache_root(cache_dir) / DATASET, args=args, sources=sources, build=build)[0]
