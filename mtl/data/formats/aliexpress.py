"""AliExpress (MTReclib CSV): column names, file layout and the raw reader.

One folder per country ``AliExpress_{NL,ES,FR,US,RU}`` holding ``train.csv`` and
``test.csv`` with a header: ``search_id`` (a query id), ``categorical_1..16``,
``numerical_1..63`` and the labels ``click`` and ``conversion``. torch-rechub's
public sample is ``aliexpress_{train,test}_sample.csv``.
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence


from mtl.data.reader import Column, read_columns, read_header
from mtl.data.errors import DataError
from mtl.data.frame import Frame

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
    if sample:
        options = [(folder / SAMPLE_FILES[0], folder / SAMPLE_FILES[1])]
    else:
        sub = folder / f"AliExpress_{country}"
        options = [(sub / "train.csv", sub / "test.csv")]
        if folder.name == f"AliExpress_{country}":
            options.append((folder / "train.csv", folder / "test.csv"))
    for train, test in options:
        if train.is_file() and test.is_file():
            return {"train": train, "test": test}
    return None


def _columns(with_id: bool) -> dict[str, Column]:
    categorical: Sequence[str] = COLUMNS[0] if with_id else CATEGORICAL
    columns = {c: Column("factor") for c in categorical}
    columns.update({c: Column("number") for c in NUMERICAL})
    columns.update({c: Column("label", task="binary") for c in LABELS})
    return columns


def read_aliexpress_files(paths: Sequence[str | os.PathLike], *, with_id: bool = True) -> Frame:
    """Several AliExpress CSVs (e.g. train and test) as one frame, rows file by file
    (``frame.source_ids`` says which); ``with_id=False`` skips ``search_id``, which no model
    uses (the TFDS builder keeps it)."""
    headers = [read_header(p, delimiter=",") for p in paths]
    for h in headers:
        missing = [c for c in (ID_COLUMN,) + CATEGORICAL + NUMERICAL + LABELS if c not in h.names]
        if missing:
            raise DataError(f"not an MTReclib AliExpress file: columns {missing} are missing; header: "
                            f"{', '.join(h.names)}", path=h.path, line=h.line)  # fmt: skip
    table = read_columns(headers, _columns(with_id))
    table.raise_first(NUMERICAL + LABELS)
    numeric = {**{c: table.numeric[c] for c in NUMERICAL}, **{c: table.labels[c] for c in LABELS}}
    return Frame({c: table.categorical[c] for c in (COLUMNS[0] if with_id else CATEGORICAL)}, numeric, table.sources,
                 table.source_ids, table.lines, table.block, table.block_columns)  # fmt: skip


def read_aliexpress_file(path: str | os.PathLike, *, with_id: bool = True) -> Frame:
    """One MTReclib AliExpress CSV as a frame."""
    return read_aliexpress_files([path], with_id=with_id)
