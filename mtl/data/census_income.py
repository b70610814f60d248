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

The file format and its reader are :mod:`mtl.data.formats.census_income`. The raw
file is parsed once into cached columns (``cache_dir``, default ``~/.cache/mtl``),
and the prepared splits are cached too: a repeated load memory-maps them
(:mod:`mtl.data.cache`). ``reader="tfds"`` goes through the TFDS builder
:mod:`mtl.data.builders.census_income_kdd` instead (``array_record`` files, read
back once in batches into the same column cache).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from mtl.data import paths
from mtl.data.base import MultiTaskData, TaskSpec
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.formats.census_income import (  # noqa: F401 (the format's names, re-exported)
    COLUMNS,
    CONTINUOUS,
    DATASET,
    EDUCATION,
    FEATURE_NUMERIC,
    HOW_TO_GET,
    INCOME,
    INSTANCE_WEIGHT,
    MARITAL,
    NUM_COLUMNS,
    NUM_TEST_ROWS,
    NUM_TRAIN_ROWS,
    RAW_NUMERIC,
    TEST_CONTENT_SHA256,
    TEST_FILE,
    TRAIN_FILE,
    URL_BASE,
    YEAR,
    check_test_content,
    files_in,
    read_census_file,
)
from mtl.data.frame import Frame, cached, concat_frames
from mtl.data.preprocess import build_multitask_data, permutation_split

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
    defer: bool = False,
) -> dict[str, Frame]:
    """The raw files as frames ``{"test": ..., "train": ...}``, via the columnar cache.

    ``reader="fast"`` parses the raw file with numpy (seconds); ``reader="tfds"``
    runs the TFDS builder into ``<cache>/tfds`` and reads its ``array_record``
    split back in batches (the cache file then sits beside the array_record files).
    """
    files = {"test": test} if train is None else {"train": train, "test": test}
    if reader == "fast":
        root = paths.cache_root(cache_dir) / DATASET / "frames"
        return {
            split: cached(root, name=split, sources=[p], args={"reader": "census"}, build=lambda p=p: read_census_file(p),
                          defer=defer)
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
    user_column: str = "",
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
      user_column: must stay empty: the census has no user id.

    The prepared splits are cached (``cache_dir``) and come back memory-mapped.
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
    if user_column:
        raise DataError(f"Census-Income has no user column (user_column={user_column!r}); leave it empty")
    if reader not in ("fast", "tfds"):
        raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")
    use_train = protocol == "paper"
    sources = [train_path] * use_train + [test_path]
    args = dict(task_group=task_group, protocol=protocol, seed=seed if use_train else 0, reader=reader,
                check_row_counts=bool(check_row_counts))  # fmt: skip

    def build(out):
        frames = prepared_frames(folder, train_path if use_train else None, test_path, cache_dir=cache_dir,
                                 reader=reader, defer=True)  # fmt: skip
        return _prepare(frames, train_path, test_path, out=out, task_group=task_group, protocol=protocol,
                        seed=seed, reader=reader, check_row_counts=check_row_counts)  # fmt: skip

    data, _ = cached_dataset(paths.cache_root(cache_dir) / DATASET, args=args, sources=sources, build=build)
    if data.info["seed"] != seed:  # test_split ignores the seed; the cache entry is shared
        data.info = {**data.info, "seed": seed}
    return data


def _prepare(frames, train_path, test_path, *, out, task_group, protocol, seed, reader,
             check_row_counts) -> MultiTaskData:  # fmt: skip
    use_train = protocol == "paper"
    test = frames["test"]
    if check_row_counts:
        _check_rows(test, NUM_TEST_ROWS, str(test_path))
    if use_train:
        train = frames["train"]
        if check_row_counts:
            _check_rows(train, NUM_TRAIN_ROWS, str(train_path))
        frame, (train_rows, test_rows) = concat_frames([frames.pop("train"), frames.pop("test")], consume=True)
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
        "user_column": None,
    }
    return build_multitask_data(
        frame, splits, labels=labels, tasks=tasks, categorical=categorical, numeric=numeric, info=info,
        split_sources=sources, out=out,
    )  # fmt: skip


def _year_as_number(frame: Frame) -> np.ndarray:
    factor = frame.categorical[COLUMNS[YEAR]]
    try:
        return factor.values.astype(np.float64)[factor.codes]
    except ValueError:
        raise DataError(f"year values {list(factor.values)} are not numbers", path=frame.sources[0], column="year")
