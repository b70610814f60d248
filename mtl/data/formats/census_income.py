"""UCI Census-Income (KDD): file names, the 42 columns and the raw reader (shared by the loader
:mod:`mtl.data.census_income` and the TFDS builder)."""

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

from mtl.data.errors import DataError
from mtl.data.frame import Frame, TooWide, sorted_factor
from mtl.data.reader import _to_float

DATASET = "census_income_kdd"
TRAIN_FILE, TEST_FILE = "census-income.data", "census-income.test"
NUM_TRAIN_ROWS, NUM_TEST_ROWS = 199_523, 99_762
#: sha256 of the decompressed UCI ``census-income.test`` (51,918,813 bytes), checked on every parse.
TEST_CONTENT_SHA256 = "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c"
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
CONTINUOUS = (0, 5, 16, 17, 18, 30, 39)  # "continuous" in census-income.names
INSTANCE_WEIGHT, EDUCATION, MARITAL, YEAR, INCOME = 24, 4, 7, 40, 41
RAW_NUMERIC = CONTINUOUS + (INSTANCE_WEIGHT,)  # parsed as numbers in the raw frame
FEATURE_NUMERIC = CONTINUOUS + (YEAR,)  # the 8 numeric model features
#: Raw frame columns (also the TFDS builder's columns): (categorical, numeric).
RAW_COLUMNS = (tuple(c for j, c in enumerate(COLUMNS) if j not in RAW_NUMERIC), tuple(COLUMNS[j] for j in RAW_NUMERIC))

def files_in(folder: pathlib.Path) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """``(train file, test file)`` in ``folder``, ``.gz`` preferred; ``None`` where absent."""
    return tuple(next((folder / n for n in (name + ".gz", name) if (folder / n).is_file()), None)
                 for name in (TRAIN_FILE, TEST_FILE))  # fmt: skip


def read_census_file(path: str | os.PathLike) -> Frame:
    """A raw census file (``.gz`` or plain) as a :class:`Frame`: nominal columns (``year`` and the
    labels included) as stripped factors, the continuous columns and the instance weight as
    float32. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``; trailing blank lines are ignored,
    every other line must have 42 fields."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic (TFDS names downloads without the .gz suffix)
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"is not a readable gzip file ({e})", path=path) from None
    if path.name.startswith(TEST_FILE):
        check_test_content(raw, path)
    body = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b" \t\n")
    if not body:
        raise DataError("file is empty", path=path)
    if (blank := body.find(b"\n\n")) >= 0:
        raise DataError("is an empty line; every line must hold one record", path=path,
                        line=body[:blank].count(b"\n") + 2)  # fmt: skip
    problems = []
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body.decode("latin-1").encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=COLUMNS, use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False,
                                             invalid_row_handler=lambda r: problems.append(r) or "error"),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() if j in RAW_NUMERIC else pa.dictionary(
                pa.int32(), pa.string()) for j, c in enumerate(COLUMNS)}, strings_can_be_null=False),
        )  # fmt: skip
    except pa.ArrowInvalid as e:
        if problems:
            raise DataError(f"has {problems[0].actual_columns} comma-separated fields, expected {len(COLUMNS)}",
                            path=path, line=problems[0].number) from None  # fmt: skip
        raise DataError(f"cannot be read: {e}", path=path) from None
    categorical, numeric = {}, {}
    for j, name in enumerate(COLUMNS):
        column = table.column(name).combine_chunks()
        if j in RAW_NUMERIC:
            try:
                numeric[name] = pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(
                    zero_copy_only=False).astype(np.float32)  # fmt: skip
            except pa.ArrowInvalid:
                values = pc.utf8_trim_whitespace(column).to_numpy(zero_copy_only=False)
                row = int(np.argmin(_to_float(np.asarray(values, str))[1]))  # the first that float() rejects too
                raise DataError(f"value {column[row].as_py()!r} is not a number; correct the line or use the original "
                                "UCI file", path=path, line=row + 1, column=name) from None  # fmt: skip
            continue
        try:
            categorical[name] = sorted_factor(column.dictionary, column.indices.to_numpy().astype(np.int32), strip=True)
        except TooWide as e:
            raise DataError(str(e), path=path, line=e.row + 1, column=name) from None
    return Frame.single_file(path, categorical, numeric)


def check_test_content(raw: bytes, path) -> bool:
    """Compares the decompressed test file with UCI's (sha256); a mismatch only warns (a re-encoded
    copy can hold the same data; rows and labels are checked as errors anyway)."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TEST_CONTENT_SHA256:
        logging.warning("%s: content sha256 %s differs from UCI's census-income.test (%s); "
                        "rows and labels are still checked", path, digest, TEST_CONTENT_SHA256)  # fmt: skip
    return digest == TEST_CONTENT_SHA256
