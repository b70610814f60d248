"""AliExpress (MTReclib CSV): column names, file layout and the raw reader (shared by the loader
:mod:`mtl.data.aliexpress` and the TFDS builder)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from mtl.data.frame import Frame
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


def read_aliexpress_files(paths: Sequence[str | os.PathLike], *, with_id: bool = True) -> Frame:
    """Several AliExpress CSVs (e.g. train and test) as one frame, rows file by file
    (``frame.source_ids`` says which); ``with_id=False`` skips ``search_id``."""
    columns = {c: Column("factor", integers=True) for c in (COLUMNS[0] if with_id else CATEGORICAL)}
    columns.update({c: Column("number") for c in NUMERICAL} | {c: Column("label") for c in LABELS})
    table = read_dataset_files(paths, columns, what="an MTReclib AliExpress")
    table.numeric.update(table.labels)
    return table


def read_aliexpress_file(path: str | os.PathLike, *, with_id: bool = True) -> Frame:
    """One MTReclib AliExpress CSV as a frame."""
    return read_aliexpress_files([path], with_id=with_id)
