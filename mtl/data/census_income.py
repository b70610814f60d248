"""UCI Census-Income (KDD), the MMoE / PLE multi-task benchmark: the 42 columns, the raw reader (also the TFDS
builder's, :mod:`mtl.data.builders.census_income_kdd`) and the loader.

    data = mtl.data.load("census_income", data_dir="../shared/data", task_group=1)

Task groups (Ma et al., KDD 2018): 1 = ``income`` (``50000+.``) and ``never_married``; 2 = ``college``
(:data:`COLLEGE_OR_ABOVE`) and ``never_married``. Protocols and features: ``docs/data.md``.
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
from mtl.data.base import MultiTaskData, TaskSpec
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.frame import Frame, TooWide, concat_frames, sorted_factor
from mtl.data.preprocess import build_multitask_data, permutation_split
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


INCOME_VALUES, INCOME_POSITIVE, NEVER_MARRIED = ("- 50000.", "50000+."), "50000+.", "Never married"
#: Education at or above college entry (CPS codes 40-46); everything below is 0.
COLLEGE_OR_ABOVE = frozenset({
    "Some college but no degree", "Associates degree-occup /vocational", "Associates degree-academic program",
    "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)", "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
})  # fmt: skip
TASK_GROUPS = {1: (("income", INCOME), ("never_married", MARITAL)),
               2: (("college", EDUCATION), ("never_married", MARITAL))}
PROTOCOLS = ("auto", "paper", "test_split")


def find_census_files(data_dir=None) -> tuple[pathlib.Path, pathlib.Path | None, pathlib.Path]:
    """``(folder, train file or None, test file)``: ``data_dir`` holds the files or ``census_income_kdd/``."""
    folder = paths.resolve_dataset_dir(data_dir, dataset="Census-Income (KDD)", folder=DATASET,
                                       has_files=lambda d: files_in(d)[1] is not None,
                                       how_to_get=HOW_TO_GET)  # fmt: skip
    return (folder, *files_in(folder))


def task_labels(frame: Frame, task_group: int) -> tuple[np.ndarray, list[TaskSpec]]:
    """``(labels (N, 2), tasks)`` for a task group; checks the raw label values."""
    income = frame.categorical[COLUMNS[INCOME]]
    unexpected = sorted(set(map(str, income.values)) - set(INCOME_VALUES))
    if unexpected:
        row = int(np.flatnonzero(np.isin(income.codes, np.flatnonzero(np.isin(income.values, unexpected))))[0])
        path, line = frame.locate(row)
        raise DataError(f"income value {unexpected[0]!r} is neither of {INCOME_VALUES}", path=path, line=line,
                        column=COLUMNS[INCOME])  # fmt: skip
    marital = frame.categorical[COLUMNS[MARITAL]]
    if NEVER_MARRIED not in set(marital.values):
        raise DataError(f"no row has marital status {NEVER_MARRIED!r} (values: {list(marital.values)[:8]}); the "
                        "never-married label would be all zero",
                        path=frame.sources[0], column=COLUMNS[MARITAL])  # fmt: skip
    positive = {INCOME: [INCOME_POSITIVE], MARITAL: [NEVER_MARRIED], EDUCATION: sorted(COLLEGE_OR_ABOVE)}
    columns = [frame.categorical[COLUMNS[col]] for _, col in TASK_GROUPS[task_group]]
    labels = [np.isin(f.values, positive[col])[f.codes] for f, (_, col) in zip(columns, TASK_GROUPS[task_group])]
    tasks = [TaskSpec(name, "binary") for name, _ in TASK_GROUPS[task_group]]
    return np.stack(labels, axis=1).astype(np.float64), tasks


def load_census_income(*, data_dir: str | os.PathLike | None = None, task_group: int = 1, protocol: str = "auto",
                       seed: int = 0, cache_dir: str | os.PathLike | None = None, check_row_counts: bool = True,
                       user_column: str = "") -> MultiTaskData:  # fmt: skip
    """Census-Income (KDD) as two binary tasks: ``task_group`` 1 or 2, ``protocol`` ``auto``,
    ``paper`` or ``test_split`` (``seed`` seeds ``paper``'s validation/test halves),
    ``check_row_counts`` (off only for a subset); ``user_column`` must stay empty. The protocols:
    ``docs/data.md``, *Census-Income protocols*."""
    task_group = int(task_group)
    for name, value, choices in (("task_group", task_group, (1, 2)), ("protocol", protocol, PROTOCOLS)):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    folder, train_path, test_path = find_census_files(data_dir)
    if protocol == "auto":
        protocol = "paper" if train_path is not None else "test_split"
    if protocol == "paper" and train_path is None:
        raise DataError(f"protocol='paper' needs the train file {TRAIN_FILE}(.gz) in {folder}; "
                        f"use protocol='test_split' or add it. {HOW_TO_GET}")  # fmt: skip
    if user_column:
        raise DataError(f"Census-Income has no user column (user_column={user_column!r}); leave it empty")
    use_train = protocol == "paper"
    args = dict(task_group=task_group, protocol=protocol, seed=seed if use_train else 0,
                check_row_counts=bool(check_row_counts))

    def build(out):
        files = {"train": train_path, "test": test_path} if use_train else {"test": test_path}
        frames = {split: read_census_file(p) for split, p in files.items()}
        for split, expected in (("test", NUM_TEST_ROWS), ("train", NUM_TRAIN_ROWS)):
            if check_row_counts and split in frames and frames[split].num_rows != expected:
                raise DataError(f"has {frames[split].num_rows} rows, the UCI file has {expected:,}; is it truncated "
                                "or a different file?", path=frames[split].sources[0])  # fmt: skip
        if use_train:
            frame, (train_rows, test_rows) = concat_frames([frames.pop("train"), frames.pop("test")], consume=True)
            shuffled = test_rows[np.random.default_rng(seed).permutation(len(test_rows))]
            halves = np.split(shuffled, [len(test_rows) // 2])
            splits = dict(zip(("train", "validation", "test"), (train_rows, *halves)))
            description = (f"paper: train on {TRAIN_FILE} ({len(train_rows):,} rows); {TEST_FILE} "
                           f"permuted with default_rng({seed}) and split 1:1 into validation/test")  # fmt: skip
            sources = {"train": str(train_path), "validation": f"half of {test_path}", "test": f"half of {test_path}"}
        else:
            frame = frames["test"]
            splits = dict(zip(("train", "validation", "test"), permutation_split(frame.num_rows, (0.5, 0.25, 0.25), 0)))
            description = (f"test_split: {TEST_FILE} only ({frame.num_rows:,} rows), permuted with default_rng(0) "
                           "and cut 50%/25%/25% into train/validation/test")  # fmt: skip
            sources = {k: f"{k} part of {test_path}" for k in splits}
        labels, tasks = task_labels(frame, task_group)
        excluded = sorted({INSTANCE_WEIGHT, INCOME} | {col for _, col in TASK_GROUPS[task_group]})
        categorical = [c for j, c in enumerate(COLUMNS) if j not in excluded and j not in FEATURE_NUMERIC]
        year = frame.categorical[COLUMNS[YEAR]]
        try:
            frame.numeric[COLUMNS[YEAR]] = year.values.astype(np.float64)[year.codes]
        except ValueError:
            raise DataError(f"year values {list(year.values)[:8]} are not all numbers (UCI's are 94 and 95); use the "
                            "original UCI file", path=frame.sources[0], column="year") from None  # fmt: skip
        info = {"dataset": DATASET, "protocol": protocol, "protocol_description": description,
                "task_group": task_group, "seed": seed, "files": [str(train_path)] * use_train + [str(test_path)],
                "excluded_columns": [COLUMNS[j] for j in excluded], "user_column": None,
                "label_columns": [COLUMNS[col] for _, col in TASK_GROUPS[task_group]]}  # fmt: skip
        return build_multitask_data(frame, splits, labels=labels, tasks=tasks, categorical=categorical,
                                    numeric=[COLUMNS[j] for j in FEATURE_NUMERIC], info=info,
                                    split_sources=sources, out=out)  # fmt: skip

    data, _ = cached_dataset(paths.cache_root(cache_dir) / DATASET, args=args,
                             sources=[train_path] * use_train + [test_path], build=build)  # fmt: skip
    if data.info["seed"] != seed:  # test_split ignores the seed; the cache entry is shared
        data.info = {**data.info, "seed": seed}
    return data
