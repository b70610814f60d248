"""Ali-CCP (Alibaba Click and Conversion Prediction), the ESMM dataset, in torch-rechub CSV or PaddleRec
ESMM text (:mod:`mtl.data.formats.ali_ccp` reads them); tasks ``click``, ``conversion`` (``purchase``),
``ctcvr``. The formats and protocols: ``docs/data.md``, *Ali-CCP and AliExpress*.

    data = mtl.data.load("ali_ccp", data_dir=..., tasks="click,ctcvr")
"""

from __future__ import annotations

import os

import numpy as np

from mtl.data import paths
from mtl.data.base import MultiTaskData
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.formats import ali_ccp as ccp
from mtl.data.frame import concat_frames, file_parts
from mtl.data.preprocess import build_multitask_data, esmm_task_labels, permutation_split


def find_ali_ccp_files(data_dir=None, *, format: str = "auto", sample: bool = False) -> tuple[str, dict]:
    """``(format, {split: path or [paths]})`` of the first folder that holds files of ``format``."""
    if format not in ccp.FORMATS:
        raise ValueError(f"format must be one of {ccp.FORMATS}, got {format!r}")
    finders = {"torch_rechub": ccp.torch_rechub_files_in, "paddlerec": ccp.paddlerec_files_in}
    formats, errors = ("torch_rechub", "paddlerec") if format == "auto" else (format,), []  # torch-rechub first
    in_sample = None if sample else lambda d: any(finders[g](d, True) for g in formats)  # for the hint
    for f in formats:
        try:
            folder = paths.resolve_dataset_dir(data_dir, dataset="Ali-CCP", folder=ccp.DATASET, subfolders=True,
                                               has_files=lambda d, f=f: finders[f](d, sample) is not None,
                                               has_sample=in_sample, how_to_get=ccp.HOW_TO_GET)  # fmt: skip
            return f, finders[f](folder, sample)
        except DataError as e:
            errors.append(e)
    raise errors[0]


def load_ali_ccp(*, data_dir: str | os.PathLike | None = None, format: str = "auto", sample: bool = False,
                 tasks: str = "click,conversion", seed: int = 0, validation_fraction: float = 0.1,
                 cache_dir: str | os.PathLike | None = None, reader: str = "fast", allow_single_class: bool = False,
                 user_column: str = "") -> MultiTaskData:  # fmt: skip
    """Ali-CCP as click / conversion / ctcvr tasks. ``format``: ``auto`` (torch-rechub first),
    ``torch_rechub`` or ``paddlerec``; ``seed`` and ``validation_fraction`` cut validation from
    PaddleRec's train; ``reader``: ``fast`` or ``tfds``; ``user_column``: ``""`` or ``"101"``. The
    other arguments and the rules: ``docs/data.md``, *Ali-CCP and AliExpress*."""
    if reader not in ("fast", "tfds"):
        raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")
    fmt, files = find_ali_ccp_files(data_dir, format=format, sample=sample)
    if user_column and user_column not in ccp.SPARSE_FIELDS:
        raise DataError(f"user_column {user_column!r} is not an Ali-CCP sparse field; the user id is field "
                        f"{ccp.USER_FIELD!r} (one of {', '.join(ccp.SPARSE_FIELDS)})")  # fmt: skip
    args = dict(format=fmt, sample=bool(sample), tasks=tasks, seed=seed, validation_fraction=validation_fraction,
                reader=reader, allow_single_class=bool(allow_single_class), user_column=user_column)  # fmt: skip
    lists = {k: v if isinstance(v, list) else [v] for k, v in files.items()}
    sources = [p for v in lists.values() for p in v]

    def build(out):
        if reader == "tfds":
            from mtl.data.builders.ali_ccp import AliCcp
            from mtl.data.builders.columnar import prepare, read_frame

            folder = sources[0].parent  # PaddleRec's train/ and test/ folders: the folder above them
            folder = folder.parent if fmt == "paddlerec" and folder.name in ("train", "test") else folder
            builder = prepare(AliCcp, data_dir=paths.tfds_dir(cache_dir, sources), manual_dir=folder, config=fmt)
            frame, parts = concat_frames([read_frame(builder, split) for split in files])
        elif fmt == "torch_rechub":  # the three files parsed together into one frame
            frame = ccp.read_torch_rechub_files([files["train"], files["validation"], files["test"]])
            parts = file_parts(frame)
        else:  # PaddleRec: train and test each one file or a folder of parts
            frame, parts = concat_frames([ccp.read_paddlerec_file(p) for p in lists["train"] + lists["test"]],
                                         consume=True)  # fmt: skip
            parts = [np.concatenate(parts[: len(lists["train"])]), np.concatenate(parts[len(lists["train"]) :])]
        if len(parts) == 3:
            splits = dict(zip(("train", "validation", "test"), parts))
            split_sources = {k: str(v) for k, v in files.items()}
            description = "the published train/val/test files"
        else:
            keep, held = permutation_split(len(parts[0]), (1 - validation_fraction, validation_fraction), seed)
            splits = {"train": parts[0][keep], "validation": parts[0][held], "test": parts[1]}
            split_sources = {"train": "train files", "validation": "part of the train files", "test": "test files"}
            description = (f"train files permuted with default_rng({seed}), {validation_fraction:g} of them held out "
                           "for validation; the published test files")  # fmt: skip
        labels, specs = esmm_task_labels(frame, tasks)
        users = frame.categorical[user_column].codes.astype(np.int64) if user_column else None
        info = {"dataset": ccp.DATASET, "format": fmt, "sample": bool(sample), "protocol": f"{fmt}: {description}",
                "seed": seed, "files": {k: [str(p) for p in v] if isinstance(v, list) else str(v)
                                        for k, v in files.items()},
                "reader": reader, "user_column": user_column or None}  # fmt: skip
        numeric = [c for c in ccp.COLUMNS[fmt][1] if c not in ccp.LABELS]
        return build_multitask_data(frame, splits, labels=labels, tasks=specs, categorical=list(ccp.SPARSE_FIELDS),
                                    numeric=numeric, info=info, allow_single_class=allow_single_class,
                                    split_sources=split_sources, users=users, out=out)  # fmt: skip

    return cached_dataset(paths.cache_root(cache_dir) / ccp.DATASET, args=args, sources=sources, build=build)[0]
