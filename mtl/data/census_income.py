"""UCI Census-Income (KDD), the MMoE / PLE multi-task benchmark (files and raw reader:
:mod:`mtl.data.formats.census_income`).

    data = mtl.data.load("census_income", data_dir="../shared/data", task_group=1)

Task groups (Ma et al., KDD 2018): 1 = ``income`` (``50000+.``) and ``never_married``; 2 = ``college``
(:data:`COLLEGE_OR_ABOVE`) and ``never_married``. Protocols and features: ``docs/data.md``.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from mtl.data import paths
from mtl.data.base import MultiTaskData, TaskSpec
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.formats import census_income as fmt
from mtl.data.frame import Frame, concat_frames
from mtl.data.preprocess import build_multitask_data, permutation_split

INCOME_VALUES, INCOME_POSITIVE, NEVER_MARRIED = ("- 50000.", "50000+."), "50000+.", "Never married"
#: Education at or above college entry (CPS codes 40-46); everything below is 0.
COLLEGE_OR_ABOVE = frozenset({
    "Some college but no degree", "Associates degree-occup /vocational", "Associates degree-academic program",
    "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)", "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
})  # fmt: skip
TASK_GROUPS = {1: (("income", fmt.INCOME), ("never_married", fmt.MARITAL)),
               2: (("college", fmt.EDUCATION), ("never_married", fmt.MARITAL))}
PROTOCOLS = ("auto", "paper", "test_split")


def find_census_files(data_dir=None) -> tuple[pathlib.Path, pathlib.Path | None, pathlib.Path]:
    """``(folder, train file or None, test file)``: ``data_dir`` holds the files or ``census_income_kdd/``."""
    folder = paths.resolve_dataset_dir(data_dir, dataset="Census-Income (KDD)", folder=fmt.DATASET,
                                       has_files=lambda d: fmt.files_in(d)[1] is not None,
                                       how_to_get=fmt.HOW_TO_GET)  # fmt: skip
    return (folder, *fmt.files_in(folder))


def prepared_frames(folder: pathlib.Path, train: pathlib.Path | None, test: pathlib.Path, *, cache_dir=None,
                    reader: str = "fast") -> dict[str, Frame]:  # fmt: skip
    """The raw files as frames ``{"test": ..., "train": ...}``: parsed (``reader="fast"``) or built
    into ``<cache>/tfds`` by the TFDS builder and read back (``reader="tfds"``)."""
    files = {"test": test} if train is None else {"train": train, "test": test}
    if reader == "fast":
        return {split: fmt.read_census_file(p) for split, p in files.items()}
    from mtl.data.builders.census_income_kdd import CensusIncomeKdd
    from mtl.data.builders.columnar import prepare, read_frame

    builder = prepare(CensusIncomeKdd, data_dir=paths.tfds_dir(cache_dir, files.values()), manual_dir=folder)
    return {split: read_frame(builder, split) for split in files}


def task_labels(frame: Frame, task_group: int) -> tuple[np.ndarray, list[TaskSpec]]:
    """``(labels (N, 2), tasks)`` for a task group; checks the raw label values."""
    income = frame.categorical[fmt.COLUMNS[fmt.INCOME]]
    unexpected = sorted(set(map(str, income.values)) - set(INCOME_VALUES))
    if unexpected:
        row = int(np.flatnonzero(np.isin(income.codes, np.flatnonzero(np.isin(income.values, unexpected))))[0])
        path, line = frame.locate(row)
        raise DataError(f"income value {unexpected[0]!r} is neither of {INCOME_VALUES}", path=path, line=line,
                        column=fmt.COLUMNS[fmt.INCOME])  # fmt: skip
    marital = frame.categorical[fmt.COLUMNS[fmt.MARITAL]]
    if NEVER_MARRIED not in set(marital.values):
        raise DataError(f"no row has marital status {NEVER_MARRIED!r} (values: {list(marital.values)[:8]}); the "
                        "never-married label would be all zero",
                        path=frame.sources[0], column=fmt.COLUMNS[fmt.MARITAL])  # fmt: skip
    positive = {fmt.INCOME: [INCOME_POSITIVE], fmt.MARITAL: [NEVER_MARRIED], fmt.EDUCATION: sorted(COLLEGE_OR_ABOVE)}
    columns = [frame.categorical[fmt.COLUMNS[col]] for _, col in TASK_GROUPS[task_group]]
    labels = [np.isin(f.values, positive[col])[f.codes] for f, (_, col) in zip(columns, TASK_GROUPS[task_group])]
    tasks = [TaskSpec(name, "binary") for name, _ in TASK_GROUPS[task_group]]
    return np.stack(labels, axis=1).astype(np.float64), tasks


def load_census_income(*, data_dir: str | os.PathLike | None = None, task_group: int = 1, protocol: str = "auto",
                       seed: int = 0, cache_dir: str | os.PathLike | None = None, reader: str = "fast",
                       check_row_counts: bool = True, user_column: str = "") -> MultiTaskData:  # fmt: skip
    """Census-Income (KDD) as two binary tasks: ``task_group`` 1 or 2, ``protocol`` ``auto``,
    ``paper`` or ``test_split`` (``seed`` seeds ``paper``'s validation/test halves), ``reader``
    ``fast`` or ``tfds``, ``check_row_counts`` (off only for a subset); ``user_column`` must stay
    empty. The protocols: ``docs/data.md``, *Census-Income protocols*."""
    task_group = int(task_group)
    for name, value, choices in (("task_group", task_group, (1, 2)), ("protocol", protocol, PROTOCOLS),
                                 ("reader", reader, ("fast", "tfds"))):  # fmt: skip
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    folder, train_path, test_path = find_census_files(data_dir)
    if protocol == "auto":
        protocol = "paper" if train_path is not None else "test_split"
    if protocol == "paper" and train_path is None:
        raise DataError(f"protocol='paper' needs the train file {fmt.TRAIN_FILE}(.gz) in {folder}; "
                        f"use protocol='test_split' or add it. {fmt.HOW_TO_GET}")  # fmt: skip
    if user_column:
        raise DataError(f"Census-Income has no user column (user_column={user_column!r}); leave it empty")
    use_train = protocol == "paper"
    args = dict(task_group=task_group, protocol=protocol, seed=seed if use_train else 0, reader=reader,
                check_row_counts=bool(check_row_counts))  # fmt: skip

    def build(out):
        frames = prepared_frames(folder, train_path if use_train else None, test_path, cache_dir=cache_dir,
                                 reader=reader)  # fmt: skip
        for split, expected in (("test", fmt.NUM_TEST_ROWS), ("train", fmt.NUM_TRAIN_ROWS)):
            if check_row_counts and split in frames and frames[split].num_rows != expected:
                raise DataError(f"has {frames[split].num_rows} rows, the UCI file has {expected:,}; is it truncated "
                                "or a different file?", path=frames[split].sources[0])  # fmt: skip
        if use_train:
            frame, (train_rows, test_rows) = concat_frames([frames.pop("train"), frames.pop("test")], consume=True)
            shuffled = test_rows[np.random.default_rng(seed).permutation(len(test_rows))]
            halves = np.split(shuffled, [len(test_rows) // 2])
            splits = dict(zip(("train", "validation", "test"), (train_rows, *halves)))
            description = (f"paper: train on {fmt.TRAIN_FILE} ({len(train_rows):,} rows); {fmt.TEST_FILE} "
                           f"permuted with default_rng({seed}) and split 1:1 into validation/test")  # fmt: skip
            sources = {"train": str(train_path), "validation": f"half of {test_path}", "test": f"half of {test_path}"}
        else:
            frame = frames["test"]
            splits = dict(zip(("train", "validation", "test"), permutation_split(frame.num_rows, (0.5, 0.25, 0.25), 0)))
            description = (f"test_split: {fmt.TEST_FILE} only ({frame.num_rows:,} rows), permuted with default_rng(0) "
                           "and cut 50%/25%/25% into train/validation/test")  # fmt: skip
            sources = {k: f"{k} part of {test_path}" for k in splits}
        labels, tasks = task_labels(frame, task_group)
        excluded = sorted({fmt.INSTANCE_WEIGHT, fmt.INCOME} | {col for _, col in TASK_GROUPS[task_group]})
        categorical = [c for j, c in enumerate(fmt.COLUMNS) if j not in excluded and j not in fmt.FEATURE_NUMERIC]
        year = frame.categorical[fmt.COLUMNS[fmt.YEAR]]
        try:
            frame.numeric[fmt.COLUMNS[fmt.YEAR]] = year.values.astype(np.float64)[year.codes]
        except ValueError:
            raise DataError(f"year values {list(year.values)[:8]} are not all numbers (UCI's are 94 and 95); use the "
                            "original UCI file", path=frame.sources[0], column="year") from None  # fmt: skip
        info = {"dataset": fmt.DATASET, "protocol": protocol, "protocol_description": description,
                "task_group": task_group, "seed": seed, "files": [str(train_path)] * use_train + [str(test_path)],
                "excluded_columns": [fmt.COLUMNS[j] for j in excluded], "reader": reader, "user_column": None,
                "label_columns": [fmt.COLUMNS[col] for _, col in TASK_GROUPS[task_group]]}  # fmt: skip
        return build_multitask_data(frame, splits, labels=labels, tasks=tasks, categorical=categorical,
                                    numeric=[fmt.COLUMNS[j] for j in fmt.FEATURE_NUMERIC], info=info,
                                    split_sources=sources, out=out)  # fmt: skip

    data, _ = cached_dataset(paths.cache_root(cache_dir) / fmt.DATASET, args=args,
                             sources=[train_path] * use_train + [test_path], build=build)  # fmt: skip
    if data.info["seed"] != seed:  # test_split ignores the seed; the cache entry is shared
        data.info = {**data.info, "seed": seed}
    return data
