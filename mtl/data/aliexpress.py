"""AliExpress multi-task data (MTReclib / AITM), one dataset per country, read by
:mod:`mtl.data.formats.aliexpress`; tasks ``click``, ``conversion`` (``purchase``), ``ctcvr``. The
format and the validation cut: ``docs/data.md``, *Ali-CCP and AliExpress*.

    data = mtl.data.load("aliexpress", data_dir=..., country="NL", tasks="click,conversion")
"""

from __future__ import annotations

import os
import pathlib

from mtl.data import paths
from mtl.data.base import MultiTaskData
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.formats import aliexpress as fmt
from mtl.data.frame import concat_frames, file_parts
from mtl.data.preprocess import build_multitask_data, esmm_task_labels, permutation_split


def find_aliexpress_files(data_dir=None, *, country: str = "NL", sample: bool = False) -> dict[str, pathlib.Path]:
    """``{"train": path, "test": path}`` for a country (or the sample)."""
    country = country.upper()
    if not sample and country not in fmt.COUNTRIES:
        raise ValueError(f"country must be one of {fmt.COUNTRIES}, got {country!r}")
    folder = paths.resolve_dataset_dir(data_dir, dataset=f"AliExpress ({'sample' if sample else country})",
                                       has_files=lambda d: fmt.files_in(d, country, sample) is not None,
                                       has_sample=None if sample else lambda d: fmt.files_in(d, "NL", True) is not None,
                                       folder=fmt.DATASET, how_to_get=fmt.HOW_TO_GET, subfolders=True)  # fmt: skip
    return fmt.files_in(folder, country, sample)


def load_aliexpress(*, data_dir: str | os.PathLike | None = None, country: str = "NL", sample: bool = False,
                    tasks: str = "click,conversion", seed: int = 0, validation_fraction: float = 0.1,
                    cache_dir: str | os.PathLike | None = None, reader: str = "fast", allow_single_class: bool = False,
                    user_column: str = "") -> MultiTaskData:  # fmt: skip
    """AliExpress (one ``country`` of NL, ES, FR, US, RU, or the public ``sample``) as click /
    conversion / ctcvr tasks; ``seed`` and ``validation_fraction`` cut validation from the training
    file; ``reader``: ``fast`` or ``tfds``; ``user_column`` must stay empty (no user id). The other
    arguments and the rules: ``docs/data.md``, *Ali-CCP and AliExpress*."""
    if user_column:
        raise DataError(f"AliExpress has no user column (user_column={user_column!r}); leave it empty")
    if reader not in ("fast", "tfds"):
        raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")
    files = find_aliexpress_files(data_dir, country=country, sample=sample)
    sources = list(files.values())
    country = None if sample else country.upper()
    args = dict(country=country, sample=bool(sample), tasks=tasks, seed=seed, validation_fraction=validation_fraction,
                reader=reader, allow_single_class=bool(allow_single_class))  # fmt: skip

    def build(out):
        if reader == "fast":  # train and test parsed together into one frame
            frame = fmt.read_aliexpress_files([files["train"], files["test"]], with_id=False)
            train_rows, test_rows = file_parts(frame)
        else:
            from mtl.data.builders.aliexpress import AliExpress
            from mtl.data.builders.columnar import prepare, read_frame

            builder = prepare(AliExpress, data_dir=paths.tfds_dir(cache_dir, sources), manual_dir=files["train"].parent,
                              config=country or "sample")  # fmt: skip
            frame, (train_rows, test_rows) = concat_frames([read_frame(builder, s) for s in ("train", "test")])
        keep, held = permutation_split(len(train_rows), (1 - validation_fraction, validation_fraction), seed)
        splits = {"train": train_rows[keep], "validation": train_rows[held], "test": test_rows}
        labels, specs = esmm_task_labels(frame, tasks)
        info = {"dataset": fmt.DATASET, "country": country, "sample": bool(sample),
                "protocol": (f"train.csv permuted with default_rng({seed}), {validation_fraction:g} held out for "
                             "validation; test.csv is the test split"),
                "seed": seed, "files": {k: str(v) for k, v in files.items()}, "dropped_columns": [fmt.ID_COLUMN],
                "reader": reader, "user_column": None}  # fmt: skip
        split_sources = {"train": str(files["train"]), "validation": f"part of {files['train']}",
                         "test": str(files["test"])}  # fmt: skip
        return build_multitask_data(frame, splits, labels=labels, tasks=specs, categorical=list(fmt.CATEGORICAL),
                                    numeric=list(fmt.NUMERICAL), info=info, allow_single_class=allow_single_class,
                                    split_sources=split_sources, out=out)  # fmt: skip

    return cached_dataset(paths.cache_root(cache_dir) / fmt.DATASET, args=args, sources=sources, build=build)[0]
