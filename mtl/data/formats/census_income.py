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
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mtl.data import paths
from mtl.data.errors import DataError
from mtl.data.frame import Frame, TooWide, sorted_factor

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


def files_in(folder: pathlib.Path) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """``(train file, test file)`` in ``folder``, ``.gz`` preferred; ``None`` where absent."""
    train = paths.first_existing(folder, (TRAIN_FILE + ".gz", TRAIN_FILE))
    test = paths.first_existing(folder, (TEST_FILE + ".gz", TEST_FILE))
    return train, test


def read_census_file(path: str | os.PathLike, *, max_rows: int | None = None) -> Frame:
    """Parses a raw census file (``.gz`` or plain) into a :class:`Frame`.

    Nominal columns (named by :data:`COLUMNS`, including ``year`` and the labels)
    become stripped categorical factors; the 7 continuous columns and the instance
    weight become numbers (float32, like the TFDS builder). Lines end with ``\\n``,
    ``\\r\\n`` or ``\\r``; trailing blank lines are ignored, every other line must have 42
    fields.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic (TFDS names downloads without the .gz suffix)
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"is not a readable gzip file ({e})", path=path) from None
    if max_rows is None and path.name.startswith(TEST_FILE):
        check_test_content(raw, path)
    body = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b" \t\n")
    lines = body.split(b"\n", max_rows)[:max_rows] if max_rows is not None else None
    body = b"\n".join(lines) if lines is not None else body
    if not body:
        raise DataError("file is empty", path=path)
    blank = body.find(b"\n\n")
    if blank >= 0:
        raise DataError("is an empty line; every line must hold one record", path=path,
                        line=body[:blank].count(b"\n") + 2)  # fmt: skip
    names = [f"c{j}" for j in range(NUM_COLUMNS)]
    problems = []
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body.decode("latin-1").encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False, invalid_row_handler=lambda r: problems.append(r) or "error"),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() if j in RAW_NUMERIC else pa.dictionary(pa.int32(), pa.string())
                              for j, n in enumerate(names)}, strings_can_be_null=False),
        )  # fmt: skip
    except pa.ArrowInvalid as e:
        if problems:
            raise DataError(f"has {problems[0].actual_columns} comma-separated fields, expected {NUM_COLUMNS}",
                            path=path, line=problems[0].number) from None  # fmt: skip
        raise DataError(f"cannot be read: {e}", path=path) from None
    categorical, numeric = {}, {}
    for j, name in enumerate(COLUMNS):
        column = table.column(names[j]).combine_chunks()
        if j in RAW_NUMERIC:
            try:
                x = pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid as e:
                bad = next((i for i, v in enumerate(column.to_pylist()) if not _is_float(v)), None)
                raise DataError(f"value {column[bad].as_py()!r} is not a number" if bad is not None else str(e),
                                path=path, line=None if bad is None else bad + 1, column=name) from None  # fmt: skip
            numeric[name] = x.astype(np.float32)
            continue
        try:
            categorical[name] = sorted_factor(column.dictionary, column.indices.to_numpy().astype(np.int32), strip=True)
        except TooWide as e:
            raise DataError(str(e), path=path, line=e.row + 1, column=name) from None
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
