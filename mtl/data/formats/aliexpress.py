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

from mtl.data.delimited import Column, check_structure, read_columns, read_files, read_header
from mtl.data.errors import DataError
from mtl.data.frame import Frame, concat_frames

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
    (``frame.source_ids`` says which). Read together when every file is plain, else file by
    file (the first problem is then named exactly as :func:`read_aliexpress_file` names it)."""
    try:
        headers = [read_header(p, delimiter=",") for p in paths]
    except DataError:
        headers = []  # read file by file: problems inside earlier files are named first
    expected = (ID_COLUMN,) + CATEGORICAL + NUMERICAL + LABELS
    if headers and all(c in h.names for h in headers for c in expected):
        table = read_files(headers, _columns(with_id))
        if table is not None:
            categorical = {c: table.factors[c] for c in (COLUMNS[0] if with_id else CATEGORICAL)}
            numeric = {**{c: table.numbers[c] for c in NUMERICAL}, **{c: table.labels[c] for c in LABELS}}
            return Frame(categorical, numeric, table.sources, table.source_ids, table.lines, table.block,
                         table.block_columns)  # fmt: skip
    frames = [read_aliexpress_file(p, with_id=with_id) for p in paths]
    return concat_frames(frames, consume=True)[0]


def read_aliexpress_file(path: str | os.PathLike, *, with_id: bool = True) -> Frame:
    """One MTReclib AliExpress CSV as a frame (``with_id=False`` skips ``search_id``, which
    no model uses; the TFDS builder keeps it)."""
    header = read_header(path, delimiter=",")
    expected = (ID_COLUMN,) + CATEGORICAL + NUMERICAL + LABELS
    missing = [c for c in expected if c not in header.names]
    if missing:
        check_structure(header)  # a broken record is reported first, as it always was
        raise DataError(
            f"not an MTReclib AliExpress file: columns {missing} are missing; header: {', '.join(header.names)}",
            path=header.path,
            line=1,
        )
    categorical: Sequence[str] = COLUMNS[0] if with_id else CATEGORICAL
    table = read_columns(header, _columns(with_id))
    table.raise_first(NUMERICAL + LABELS)
    numeric = {**{c: table.numbers[c] for c in NUMERICAL}, **{c: table.labels[c] for c in LABELS}}
    frame = Frame.single_file(header.path, {c: table.factors[c] for c in categorical}, numeric, lines=table.lines)
    frame.block, frame.block_columns = table.block, table.block_columns
    return frame
