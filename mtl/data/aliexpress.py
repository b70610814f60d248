"""AliExpress multi-task data (MTReclib / AITM), one dataset per country.

    data = mtl.data.load("aliexpress", data_dir=..., country="NL", tasks="click,conversion")

The full data is on Alibaba Tianchi (dataset 74690,
https://tianchi.aliyun.com/dataset/74690), behind a login: nothing is downloaded
here. MTReclib's format, one folder per country ``AliExpress_{NL,ES,FR,US,RU}``
holding ``train.csv`` and ``test.csv`` with a header: ``search_id`` (dropped: a
query id, not a feature), ``categorical_1..16`` (categorical), ``numerical_1..63``
(numeric) and the labels ``click`` and ``conversion``.

Unlike MTReclib, which selects epochs on the test file, the validation split is
cut from the training file (``validation_fraction``, permutation seeded by
``seed``); the test file is only the test split.

``sample=True`` reads torch-rechub's small public sample
(``aliexpress_{train,test}_sample.csv``, 100 + 20 rows; a format fixture).

Tasks: ``click``, ``conversion`` (alias ``purchase``) and ``ctcvr`` = click AND
conversion.
"""

from __future__ import annotations

import os
import pathlib

from mtl.data import paths
from mtl.data.base import MultiTaskData
from mtl.data.errors import DataError
from mtl.data.frame import Frame, cached, concat_frames, factorize
from mtl.data.preprocess import build_multitask_data, esmm_task_labels, permutation_split
from mtl.data.tabular import parse_label, parse_numbers, read_delimited

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
# Raw frame columns (also the TFDS builder's columns).
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


def find_aliexpress_files(data_dir=None, *, country: str = "NL", sample: bool = False) -> dict[str, pathlib.Path]:
    """``{"train": path, "test": path}`` for a country (or the sample)."""
    country = country.upper()
    if not sample and country not in COUNTRIES:
        raise ValueError(f"country must be one of {COUNTRIES}, got {country!r}")
    try:
        folder = paths.resolve_dataset_dir(
            data_dir,
            dataset=f"AliExpress ({'sample' if sample else country})",
            folder=DATASET,
            has_files=lambda d: files_in(d, country, sample) is not None,
            how_to_get=HOW_TO_GET,
            subfolders=True,
        )
    except DataError as e:
        if not sample:
            try:
                find_aliexpress_files(data_dir, sample=True)
            except DataError:
                raise e from None
            raise DataError(f"{e} Only the small public sample is there: pass sample=True to use it.") from None
        raise
    return files_in(folder, country, sample)


def read_aliexpress_file(path: str | os.PathLike) -> Frame:
    """One MTReclib AliExpress CSV as a frame."""
    raw = read_delimited(path, delimiter=",")
    expected = (ID_COLUMN,) + CATEGORICAL + NUMERICAL + LABELS
    missing = [c for c in expected if c not in raw.header]
    if missing:
        raise DataError(
            f"not an MTReclib AliExpress file: columns {missing} are missing; header: {', '.join(raw.header)}",
            path=raw.path,
            line=1,
        )
    categorical = {c: factorize(raw.columns[c]) for c in COLUMNS[0]}
    numeric = {c: parse_numbers(raw, c) for c in NUMERICAL}
    for c in LABELS:
        numeric[c] = parse_label(raw, c, "binary")
    return Frame.single_file(raw.path, categorical, numeric, lines=raw.lines)


def load_aliexpress(
    *,
    data_dir: str | os.PathLike | None = None,
    country: str = "NL",
    sample: bool = False,
    tasks: str = "click,conversion",
    seed: int = 0,
    validation_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
    reader: str = "fast",
    allow_single_class: bool = False,
) -> MultiTaskData:
    """AliExpress (one country) as click / conversion / ctcvr tasks; see the module docstring.

    Args:
      data_dir: folder with ``AliExpress_<country>/`` (or that folder itself), or a
        parent with ``aliexpress/``; ``None`` reads ``$MTL_DATA_DIR``.
      country: ``NL``, ``ES``, ``FR``, ``US`` or ``RU``.
      sample: read the small public sample instead (``country`` is then ignored).
      tasks: comma-separated subset of ``click``, ``conversion`` (``purchase``), ``ctcvr``.
      seed, validation_fraction: the validation cut from the training file.
      cache_dir: where parsed columns are cached (default ``~/.cache/mtl``).
      reader: ``"fast"`` (direct parse) or ``"tfds"`` (through the TFDS builder).
      allow_single_class: allow a split where a task has one class (tiny samples).
    """
    files = find_aliexpress_files(data_dir, country=country, sample=sample)
    if reader == "fast":
        root = paths.cache_root(cache_dir) / DATASET
        frames = {
            split: cached(root / f"{split}-{paths.fingerprint([p], 'v1')}.npz", lambda p=p: read_aliexpress_file(p))
            for split, p in files.items()
        }
    elif reader == "tfds":
        from mtl.data.builders.aliexpress import AliExpress
        from mtl.data.builders.columnar import prepare, read_frame

        data_dir_tfds = paths.cache_root(cache_dir) / "tfds" / paths.fingerprint(files.values(), "v1")
        config = "sample" if sample else country.upper()
        builder = prepare(AliExpress, data_dir=data_dir_tfds, manual_dir=files["train"].parent, config=config)
        frames = {split: read_frame(builder, split) for split in files}
    else:
        raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")
    frame, (train_rows, test_rows) = concat_frames([frames["train"], frames["test"]])
    keep, held = permutation_split(len(train_rows), (1 - validation_fraction, validation_fraction), seed)
    splits = {"train": train_rows[keep], "validation": train_rows[held], "test": test_rows}
    labels, specs = esmm_task_labels(frame, tasks)
    info = {
        "dataset": DATASET,
        "country": None if sample else country.upper(),
        "sample": bool(sample),
        "protocol": (
            f"train.csv permuted with default_rng({seed}), {validation_fraction:g} held out for validation; "
            "test.csv is the test split"
        ),
        "seed": seed,
        "files": {k: str(v) for k, v in files.items()},
        "dropped_columns": [ID_COLUMN],
        "reader": reader,
    }
    sources = {"train": str(files["train"]), "validation": f"part of {files['train']}", "test": str(files["test"])}
    return build_multitask_data(
        frame, splits, labels=labels, tasks=specs, categorical=list(CATEGORICAL), numeric=list(NUMERICAL), info=info,
        allow_single_class=allow_single_class, split_sources=sources,
    )  # fmt: skip
