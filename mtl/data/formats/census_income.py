"""UCI Census-Income (KDD): file names, the 42 columns and the raw reader.

``census-income.data(.gz)`` (train, 199,523 rows) and ``census-income.test(.gz)``
(test, 99,762 rows): 42 comma-separated columns, no header, no quoting, every
nominal value with a leading space (stripped here), latin-1 text.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pathlib
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mtl.data import paths
from mtl.data.delimited import MAX_DISTINCT_BYTES, StringColumn, factor_of
from mtl.data.errors import DataError
from mtl.data.frame import Frame, factorize

DATASET = "census_income_kdd"
TRAIN_FILE = "census-income.data"
TEST_FILE = "census-income.test"
NUM_TRAIN_ROWS = 199_523
NUM_TEST_ROWS = 99_762
#: sha256 of the decompressed UCI ``census-income.test`` (51,918,813 bytes; its row
#: and duplicate counts match UCI's ``.names``). Checked on every parse.
TEST_CONTENT_SHA256 = "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c"
NUM_COLUMNS = 42

URL_BASE = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/"
HOW_TO_GET = (
    "Download census-income.test.gz (and census-income.data.gz for the papers' protocol) from "
    f"{URL_BASE} (or census.tar.gz there, or https://archive.ics.uci.edu/static/public/117/census+income+kdd.zip) "
    "into a folder, e.g. $MTL_DATA_DIR/census_income_kdd/."
)

# Short column names as in keras-mmoe / DeepCTR, in file order.
COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends",
    "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ",
    "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt",
    "num_emp", "fam_under_18", "country_father", "country_mother", "country_self", "citizenship",
    "own_or_self", "vet_question", "vet_benefits", "weeks_worked", "year", "income_50k",
)  # fmt: skip
assert len(COLUMNS) == NUM_COLUMNS

CONTINUOUS = (0, 5, 16, 17, 18, 30, 39)  # "continuous" in census-income.names
INSTANCE_WEIGHT = 24
EDUCATION, MARITAL, YEAR, INCOME = 4, 7, 40, 41
RAW_NUMERIC = CONTINUOUS + (INSTANCE_WEIGHT,)  # parsed as numbers in the raw frame
FEATURE_NUMERIC = CONTINUOUS + (YEAR,)  # the 8 numeric model features
#: Raw frame columns (also the TFDS builder's columns): (categorical, numeric).
RAW_COLUMNS = (
    tuple(c for j, c in enumerate(COLUMNS) if j not in RAW_NUMERIC),
    tuple(COLUMNS[j] for j in RAW_NUMERIC),
)
# Characters that end a line for Python's str.splitlines besides \n (the exact path handles them).
_OTHER_LINE_BREAKS = (b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85")


def files_in(folder: pathlib.Path) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """``(train file, test file)`` in ``folder``, ``.gz`` preferred; ``None`` where absent."""
    train = paths.first_existing(folder, (TRAIN_FILE + ".gz", TRAIN_FILE))
    test = paths.first_existing(folder, (TEST_FILE + ".gz", TEST_FILE))
    return train, test


def read_census_file(path: str | os.PathLike, *, max_rows: int | None = None) -> Frame:
    """Parses a raw census file (``.gz`` or plain) into a :class:`Frame`.

    Nominal columns (named by :data:`COLUMNS`, including ``year`` and the labels)
    become stripped categorical factors; the 7 continuous columns and the instance
    weight become numbers (float32, like the TFDS builder). Lines end with ``\\n``;
    trailing blank lines are ignored, any other line must have 42 fields.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic (TFDS names downloads without the .gz suffix)
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"is not a readable gzip file ({e})", path=path) from None
    if max_rows is None and path.name.startswith(TEST_FILE):
        check_test_content(raw, path)
    frame = None if any(c in raw for c in _OTHER_LINE_BREAKS) else _read_fast(raw, path, max_rows)
    return frame if frame is not None else _read_exact(raw, path, max_rows)


def _read_fast(raw: bytes, path: pathlib.Path, max_rows: int | None) -> Frame | None:
    """pyarrow on a plain file; ``None`` when anything is unusual (the exact path decides)."""
    body = raw.rstrip(b"\n")
    if not body.strip():
        return None
    if max_rows is not None:
        ends = np.flatnonzero(np.frombuffer(body, np.uint8) == 10)
        if max_rows <= 0:
            return None
        if len(ends) >= max_rows:
            body = body[: int(ends[max_rows - 1])]
    num_lines = body.count(b"\n") + 1
    names = [f"c{j}" for j in range(NUM_COLUMNS)]
    types = {names[j]: (pa.float64() if j in RAW_NUMERIC else pa.dictionary(pa.int32(), pa.string()))
             for j in range(NUM_COLUMNS)}  # fmt: skip
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body.decode("latin-1").encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False),
        )  # fmt: skip
    except pa.ArrowInvalid:
        return None
    if table.num_rows != num_lines:
        return None
    categorical, numeric = {}, {}
    for j, name in enumerate(COLUMNS):
        column = table.column(names[j])
        if j in RAW_NUMERIC:
            numeric[name] = column.to_numpy().astype(np.float32)
        else:
            strings = StringColumn()
            strings.add(column)
            categorical[name] = factor_of(strings, path=str(path), lines=np.arange(1, num_lines + 1), column=name)
    return Frame.single_file(path, categorical, numeric)


def _read_exact(raw: bytes, path: pathlib.Path, max_rows: int | None) -> Frame:
    """The line-by-line reader: Python's splitlines and split, the first bad line named."""
    text = raw.decode("latin-1")
    del raw
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if max_rows is not None:
        lines = lines[:max_rows]
    if not lines:
        raise DataError("file is empty", path=path)
    rows = [line.split(",") for line in lines]
    for i, r in enumerate(rows):
        if len(r) != NUM_COLUMNS:
            raise DataError(f"has {len(r)} comma-separated fields, expected {NUM_COLUMNS}", path=path, line=i + 1)
    columns = list(zip(*rows))
    del rows
    categorical, numeric = {}, {}
    for j, name in enumerate(COLUMNS):
        col = columns[j]
        if j in RAW_NUMERIC:
            try:
                values = np.array(col, dtype=np.float32)
            except ValueError:
                bad = next((i for i, v in enumerate(col) if not _is_float(v)), 0)
                raise DataError(f"value {col[bad]!r} is not a number", path=path, line=bad + 1, column=name)
            numeric[name] = values
        else:
            longest = max(range(len(col)), key=lambda i: len(col[i]))
            if len(col[longest]) * len(col) * 4 > MAX_DISTINCT_BYTES:  # numpy would need that much
                raise DataError(f"a value of {len(col[longest]):,} characters; is the file garbled here?",
                                path=path, line=longest + 1, column=name)  # fmt: skip
            categorical[name] = factorize(col, strip=True)
    return Frame.single_file(path, categorical, numeric)


def check_test_content(raw: bytes, path) -> bool:
    """Compares the decompressed test file with UCI's (sha256); warns on a mismatch.

    A mismatch is a warning, not an error: a re-encoded copy (other line endings)
    can still be the same data, and the row count and label values are checked
    as errors anyway.
    """
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TEST_CONTENT_SHA256:
        logging.warning("%s: content sha256 %s differs from UCI's census-income.test (%s); "
                        "rows and labels are still checked", path, digest, TEST_CONTENT_SHA256)
        return False
    return True


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False
