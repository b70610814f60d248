"""UCI Census-Income (KDD): the MMoE / PLE multi-task benchmark.

    data = mtl.data.load("census_income", data_dir="../shared/data", task_group=1)

Files (UCI dataset 117, https://archive.ics.uci.edu/dataset/117/census+income+kdd):
``census-income.data(.gz)`` (train, 199,523 rows) and ``census-income.test(.gz)``
(test, 99,762 rows); 42 comma-separated columns, no header, every nominal value
with a leading space (stripped here).

Tasks (Ma et al., KDD 2018):

* group 1: ``income`` (column 41 is ``50000+.``) and ``never_married``
  (column 7 is ``Never married``);
* group 2: ``college`` (column 4 in :data:`COLLEGE_OR_ABOVE`) and ``never_married``.

``COLLEGE_OR_ABOVE`` counts every education value at or above college entry, i.e.
the CPS education codes 40-46: "Some college but no degree", both associate
degrees, bachelor's, master's, professional school and doctorate. Everything
below (children, grades, high-school graduate) is 0.

Features: the instance weight (column 24) and every label's source column
(41 and 7, plus 4 in group 2) are dropped; the 7 continuous columns of the
``.names`` file plus ``year`` are numeric (8), the rest categorical (31 in group 1,
30 in group 2). Vocabularies and scaling come from the training split only
(see :mod:`mtl.data.preprocess`: id 0 is the out-of-vocabulary bucket).

Protocols (recorded in ``info["protocol"]``):

* ``paper``: train on the train file; the test file is permuted with
  ``default_rng(seed)`` and cut 1:1 into validation (first half) and test.
* ``test_split``: the test file alone, permuted with ``default_rng(0)`` (fixed,
  whatever ``seed``), cut 50% / 25% / 25% into train / validation / test at
  ``int(0.5 n)`` and ``int(0.75 n)``: 49,881 / 24,940 / 24,941 rows. This is the
  protocol of the reference runs in the project's field notes.
* ``auto``: ``paper`` when the train file exists, else ``test_split``.

The raw file is parsed once into a columnar ``.npz`` cache (``cache_dir``,
default ``~/.cache/mtl``); later loads read that cache. ``reader="tfds"`` goes
through the TFDS builder :mod:`mtl.data.builders.census_income_kdd` instead
(``array_record`` files, read back once in batches into the same cache format).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pathlib

import numpy as np

from mtl.data import paths
from mtl.data.base import MultiTaskData, TaskSpec
from mtl.data.errors import DataError
from mtl.data.frame import Frame, cached, concat_frames, factorize
from mtl.data.preprocess import build_multitask_data, permutation_split

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

INCOME_VALUES = ("- 50000.", "50000+.")
INCOME_POSITIVE = "50000+."
NEVER_MARRIED = "Never married"
COLLEGE_OR_ABOVE = frozenset(
    {
        "Some college but no degree",
        "Associates degree-occup /vocational",
        "Associates degree-academic program",
        "Bachelors degree(BA AB BS)",
        "Masters degree(MA MS MEng MEd MSW MBA)",
        "Prof school degree (MD DDS DVM LLB JD)",
        "Doctorate degree(PhD EdD)",
    }
)

TASK_GROUPS = {
    1: (("income", INCOME), ("never_married", MARITAL)),
    2: (("college", EDUCATION), ("never_married", MARITAL)),
}
PROTOCOLS = ("auto", "paper", "test_split")


def read_census_file(path: str | os.PathLike, *, max_rows: int | None = None) -> Frame:
    """Parses a raw census file (``.gz`` or plain) into a :class:`Frame`.

    Nominal columns (named by :data:`COLUMNS`, including ``year`` and the labels)
    become stripped categorical factors; the 7 continuous columns and the instance
    weight become numbers (stored at float32 precision, like the TFDS builder).
    """
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic (TFDS names downloads without the .gz suffix)
        raw = gzip.decompress(raw)
    if max_rows is None and path.name.startswith(TEST_FILE):
        check_test_content(raw, path)
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
                bad = next(i for i, v in enumerate(col) if not _is_float(v))
                raise DataError(f"value {col[bad]!r} is not a number", path=path, line=bad + 1, column=name)
            numeric[name] = values.astype(np.float64)
        else:
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


def files_in(folder: pathlib.Path) -> tuple[pathlib.Path | None, pathlib.Path | None]:
    """``(train file, test file)`` in ``folder``, ``.gz`` preferred; ``None`` where absent."""
    train = paths.first_existing(folder, (TRAIN_FILE + ".gz", TRAIN_FILE))
    test = paths.first_existing(folder, (TEST_FILE + ".gz", TEST_FILE))
    return train, test


def find_census_files(data_dir=None) -> tuple[pathlib.Path, pathlib.Path | None, pathlib.Path]:
    """``(folder, train file or None, test file)``: ``data_dir`` holds the files or ``census_income_kdd/``."""
    folder = paths.resolve_dataset_dir(
        data_dir,
        dataset="Census-Income (KDD)",
        folder=DATASET,
        has_files=lambda d: files_in(d)[1] is not None,
        how_to_get=HOW_TO_GET,
    )
    train, test = files_in(folder)
    return folder, train, test


def prepared_frames(
    folder: pathlib.Path,
    train: pathlib.Path | None,
    test: pathlib.Path,
    *,
    cache_dir=None,
    reader: str = "fast",
) -> dict[str, Frame]:
    """The raw files as frames ``{"test": ..., "train": ...}``, via the columnar cache.

    ``reader="fast"`` parses the raw file with numpy (seconds); ``reader="tfds"``
    runs the TFDS builder into ``<cache>/tfds`` and reads its ``array_record``
    split back in batches (the cache file then sits beside the array_record files).
    """
    files = {"test": test} if train is None else {"train": train, "test": test}
    if reader == "fast":
        root = paths.cache_root(cache_dir) / DATASET
        return {
            split: cached(root / f"{split}-{paths.fingerprint([p], 'v1')}.npz", lambda p=p: read_census_file(p))
            for split, p in files.items()
        }
    if reader == "tfds":
        from mtl.data.builders import census_income_kdd as builder_lib
        from mtl.data.builders.columnar import prepare, read_frame

        data_dir = paths.cache_root(cache_dir) / "tfds" / paths.fingerprint(files.values(), "v1")
        builder = prepare(builder_lib.CensusIncomeKdd, data_dir=data_dir, manual_dir=folder)
        return {split: read_frame(builder, split) for split in files}
    raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")


def _check_rows(frame: Frame, expected: int, path: str) -> None:
    if frame.num_rows != expected:
        raise DataError(
            f"has {frame.num_rows} rows, the UCI file has {expected:,}; is it truncated or a different file?",
            path=path,
        )


def task_labels(frame: Frame, task_group: int) -> tuple[np.ndarray, list[TaskSpec]]:
    """``(labels (N, 2), tasks)`` for a task group; checks the raw label values."""
    income = frame.categorical[COLUMNS[INCOME]]
    unexpected = sorted(set(map(str, income.values)) - set(INCOME_VALUES))
    if unexpected:
        row = int(np.flatnonzero(np.isin(income.codes, np.flatnonzero(np.isin(income.values, unexpected))))[0])
        path, line = frame.locate(row)
        raise DataError(
            f"income value {unexpected[0]!r} is neither of {INCOME_VALUES}",
            path=path,
            line=line,
            column=COLUMNS[INCOME],
        )
    marital = frame.categorical[COLUMNS[MARITAL]]
    if NEVER_MARRIED not in set(marital.values):
        raise DataError(
            f"no row has marital status {NEVER_MARRIED!r} (values: {list(marital.values)[:8]}); "
            "the never-married label would be all zero",
            path=frame.sources[0],
            column=COLUMNS[MARITAL],
        )
    positive = {
        INCOME: lambda values: values == INCOME_POSITIVE,
        MARITAL: lambda values: values == NEVER_MARRIED,
        EDUCATION: lambda values: np.isin(values, sorted(COLLEGE_OR_ABOVE)),
    }
    labels, tasks = [], []
    for name, col in TASK_GROUPS[task_group]:
        factor = frame.categorical[COLUMNS[col]]
        labels.append(positive[col](factor.values)[factor.codes].astype(np.float64))
        tasks.append(TaskSpec(name, "binary"))
    return np.stack(labels, axis=1), tasks


def feature_columns(task_group: int) -> tuple[list[str], list[str], list[int]]:
    """``(categorical names, numeric names, excluded column indices)`` for a task group."""
    excluded = sorted({INSTANCE_WEIGHT} | {col for _, col in TASK_GROUPS[task_group]} | {INCOME})
    numeric = [COLUMNS[j] for j in FEATURE_NUMERIC]
    categorical = [COLUMNS[j] for j in range(NUM_COLUMNS) if j not in excluded and j not in FEATURE_NUMERIC]
    return categorical, numeric, excluded


def load_census_income(
    *,
    data_dir: str | os.PathLike | None = None,
    task_group: int = 1,
    protocol: str = "auto",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    reader: str = "fast",
    check_row_counts: bool = True,
) -> MultiTaskData:
    """Census-Income (KDD) as two binary tasks; see the module docstring.

    Args:
      data_dir: folder with ``census-income.test(.gz)`` (and optionally
        ``census-income.data(.gz)``), or a parent with ``census_income_kdd/``;
        ``None`` reads ``$MTL_DATA_DIR``.
      task_group: 1 (income, never married) or 2 (college, never married).
      protocol: ``"auto"``, ``"paper"`` or ``"test_split"``.
      seed: seeds the validation/test halves under ``paper``; unused by
        ``test_split``, whose permutation is fixed at seed 0.
      cache_dir: where the parsed columns are cached (default ``~/.cache/mtl``).
      reader: ``"fast"`` (numpy parser) or ``"tfds"`` (through the TFDS builder).
      check_row_counts: require UCI's row counts (199,523 train, 99,762 test);
        turn off only to run on a subset.
    """
    task_group = int(task_group)
    if task_group not in TASK_GROUPS:
        raise ValueError(f"task_group must be 1 or 2, got {task_group!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    folder, train_path, test_path = find_census_files(data_dir)
    if protocol == "auto":
        protocol = "paper" if train_path is not None else "test_split"
    if protocol == "paper" and train_path is None:
        raise DataError(
            f"protocol='paper' needs the train file {TRAIN_FILE}(.gz) in {folder}; "
            f"use protocol='test_split' or add it. {HOW_TO_GET}"
        )
    use_train = protocol == "paper"
    frames = prepared_frames(folder, train_path if use_train else None, test_path, cache_dir=cache_dir, reader=reader)
    test = frames["test"]
    if check_row_counts:
        _check_rows(test, NUM_TEST_ROWS, str(test_path))
    if use_train:

        train = frames["train"]
        if check_row_counts:
            _check_rows(train, NUM_TRAIN_ROWS, str(train_path))
        frame, (train_rows, test_rows) = concat_frames([train, test])
        shuffled = test_rows[np.random.default_rng(seed).permutation(len(test_rows))]
        validation_half, test_half = np.split(shuffled, [len(test_rows) // 2])
        splits = {"train": train_rows, "validation": validation_half, "test": test_half}
        description = (
            f"paper: train on {TRAIN_FILE} ({len(train_rows):,} rows); {TEST_FILE} permuted with "
            f"default_rng({seed}) and split 1:1 into validation/test"
        )
        sources = {"train": str(train_path), "validation": f"half of {test_path}", "test": f"half of {test_path}"}
    else:
        frame = test
        parts = permutation_split(frame.num_rows, (0.5, 0.25, 0.25), seed=0)
        splits = dict(zip(("train", "validation", "test"), parts))
        description = (
            f"test_split: {TEST_FILE} only ({frame.num_rows:,} rows), permuted with default_rng(0) "
            "and cut 50%/25%/25% into train/validation/test"
        )
        sources = {k: f"{k} part of {test_path}" for k in splits}
    labels, tasks = task_labels(frame, task_group)
    categorical, numeric, excluded = feature_columns(task_group)
    frame.numeric[COLUMNS[YEAR]] = _year_as_number(frame)
    info = {
        "dataset": DATASET,
        "protocol": protocol,
        "protocol_description": description,
        "task_group": task_group,
        "seed": seed,
        "files": [str(train_path)] * use_train + [str(test_path)],
        "excluded_columns": [COLUMNS[j] for j in excluded],
        "label_columns": [COLUMNS[col] for _, col in TASK_GROUPS[task_group]],
        "reader": reader,
    }
    return build_multitask_data(
        frame, splits, labels=labels, tasks=tasks, categorical=categorical, numeric=numeric, info=info,
        split_sources=sources,
    )  # fmt: skip


def _year_as_number(frame: Frame) -> np.ndarray:
    factor = frame.categorical[COLUMNS[YEAR]]
    try:
        return factor.values.astype(np.float64)[factor.codes]
    except ValueError:
        raise DataError(f"year values {list(factor.values)} are not numbers", path=frame.sources[0], column="year")
