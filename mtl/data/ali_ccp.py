"""Ali-CCP (Alibaba Click and Conversion Prediction), the ESMM dataset.

    data = mtl.data.load("ali_ccp", data_dir=..., tasks="click,ctcvr")

The full data (about 42M train and 43M test impressions) is on Alibaba Tianchi
(dataset 408, https://tianchi.aliyun.com/dataset/408), behind a login: nothing
is downloaded here. Two public preprocessed formats are read (their columns, file
names and raw readers are :mod:`mtl.data.formats.ali_ccp`):

* ``torch_rechub``: ``ali_ccp_{train,val,test}.csv`` (torch-rechub's
  preprocessing) with a header: labels ``click`` and ``purchase`` (the
  conversion), 23 label-encoded sparse fields (:data:`SPARSE_FIELDS`,
  categorical) and 8 dense fields (:data:`DENSE_FIELDS`, numeric). The three
  files are the three splits.
* ``paddlerec``: PaddleRec's ESMM text format, one impression per line:
  ``id,click,conversion,field:feature,field:feature,...``. Every field of
  :data:`SPARSE_FIELDS` becomes a categorical column holding the field's FIRST
  feature id in the line (``<missing>`` when absent); the fields that carry many
  ids per impression (:data:`MULTI_VALUED_FIELDS`) also get a numeric column
  ``n_<field>`` with their count. (PaddleRec's own reader sum-pools all ids of a
  field; a fixed-width table keeps one.) Unknown field ids are skipped. Files:
  ``train/*.txt`` and ``test/*.txt``, or ``train.txt`` / ``test.txt``; the
  validation split is cut from train (``validation_fraction``, ``seed``).

``sample=True`` reads the small public samples instead
(``ali_ccp_*_sample.csv``, ``train_small.txt`` / ``test_small.txt``); they are
format fixtures, far too small to benchmark with.

Tasks: ``click``, ``conversion`` (alias ``purchase``) and ``ctcvr`` = click AND
conversion, ESMM's label over the entire impression space.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from mtl.data import paths
from mtl.data.base import MultiTaskData
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.formats.ali_ccp import (  # noqa: F401 (the format's names, re-exported)
    COLUMNS,
    DATASET,
    DENSE_FIELDS,
    FORMATS,
    HOW_TO_GET,
    LABELS,
    MULTI_VALUED_FIELDS,
    PADDLEREC_FILES,
    READERS,
    SPARSE_FIELDS,
    TORCH_RECHUB_FILES,
    USER_FIELD,
    paddlerec_files_in,
    read_paddlerec_file,
    read_torch_rechub_file,
    read_torch_rechub_files,
    torch_rechub_files_in,
)
from mtl.data.frame import Frame, cached, concat_frames, file_parts
from mtl.data.preprocess import MISSING_TOKEN, build_multitask_data, esmm_task_labels, permutation_split  # noqa: F401


def find_ali_ccp_files(data_dir=None, *, format: str = "auto", sample: bool = False) -> tuple[str, dict]:
    """``(format, {split: path or [paths]})`` of the first folder that holds files of ``format``."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    wanted = ("torch_rechub", "paddlerec") if format == "auto" else (format,)
    finders = {"torch_rechub": torch_rechub_files_in, "paddlerec": paddlerec_files_in}

    errors = []
    for f in wanted:  # "auto": torch-rechub anywhere first, then PaddleRec
        try:
            folder = paths.resolve_dataset_dir(
                data_dir,
                dataset="Ali-CCP",
                folder=DATASET,
                has_files=lambda d, f=f: finders[f](d, sample) is not None,
                how_to_get=HOW_TO_GET,
                subfolders=True,
            )
        except DataError as e:
            errors.append(e)
            continue
        return f, finders[f](folder, sample)
    message = str(errors[0])
    if not sample:
        try:
            find_ali_ccp_files(data_dir, format=format, sample=True)
        except DataError:
            pass
        else:
            message += " Only the small public samples are there: pass sample=True to use them."
    raise DataError(message)


def read_split(format: str, files, *, cache_dir=None, defer: bool = False) -> Frame:
    """One split's file(s) as a frame, through the columnar cache (``defer``: written in the
    background, see :func:`mtl.data.frame.cached`)."""
    files = files if isinstance(files, list) else [files]
    root = paths.cache_root(cache_dir) / DATASET / "frames"
    frames = [
        cached(root, name=format, sources=[p], args={"reader": format}, build=lambda p=p: READERS[format](p),
               defer=defer)
        for p in files
    ]
    return frames[0] if len(frames) == 1 else concat_frames(frames, consume=True)[0]


def load_ali_ccp(
    *,
    data_dir: str | os.PathLike | None = None,
    format: str = "auto",
    sample: bool = False,
    tasks: str = "click,conversion",
    seed: int = 0,
    validation_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
    reader: str = "fast",
    allow_single_class: bool = False,
    user_column: str = "",
) -> MultiTaskData:
    """Ali-CCP as click / conversion / ctcvr tasks; see the module docstring.

    Args:
      data_dir: folder with the files, or a parent with ``ali_ccp/``; ``None``
        reads ``$MTL_DATA_DIR``. Folders one level down are searched too.
      format: ``"auto"`` (torch-rechub CSV first), ``"torch_rechub"`` or ``"paddlerec"``.
      sample: read the small public sample files.
      tasks: comma-separated subset of ``click``, ``conversion`` (``purchase``), ``ctcvr``.
      seed, validation_fraction: the validation cut from train (PaddleRec format only).
      cache_dir: where parsed columns are cached (default ``~/.cache/mtl``).
      reader: ``"fast"`` (direct parse) or ``"tfds"`` (through the TFDS builder).
      allow_single_class: allow a split where a task has one class (tiny samples).
      user_column: ``""`` (none) or the sparse field holding the user id, ``"101"``:
        each split then carries ``users``, the row's user code (the same user has the
        same code in every split), for per-user metrics (GAUC). The field stays a
        feature.

    The prepared splits are cached (``cache_dir``) and come back memory-mapped.
    """
    if reader not in ("fast", "tfds"):
        raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")
    fmt, files = find_ali_ccp_files(data_dir, format=format, sample=sample)
    if user_column and user_column not in SPARSE_FIELDS:
        raise DataError(f"user_column {user_column!r} is not an Ali-CCP sparse field; the user id is field "
                        f"{USER_FIELD!r} (one of {', '.join(SPARSE_FIELDS)})")  # fmt: skip
    root = paths.cache_root(cache_dir) / DATASET
    args = dict(format=fmt, sample=bool(sample), tasks=tasks, seed=seed, validation_fraction=validation_fraction,
                reader=reader, allow_single_class=bool(allow_single_class), user_column=user_column)  # fmt: skip
    sources = [p for v in files.values() for p in (v if isinstance(v, list) else [v])]

    def build(out):
        if reader == "tfds":
            frames = _read_with_tfds(fmt, files, cache_dir)
        elif fmt == "torch_rechub":  # the three files parsed together into one frame
            paths = [files["train"], files["validation"], files["test"]]
            frame = cached(root / "frames", name="train+val+test", sources=paths, args={"reader": fmt},
                           build=lambda: read_torch_rechub_files(paths), defer=True)  # fmt: skip
            frames = dict(zip(("train", "validation", "test"), file_parts(frame)), frame=frame)
        else:
            frames = {split: read_split(fmt, f, cache_dir=cache_dir, defer=True) for split, f in files.items()}
        return _prepare(frames, fmt, files, out=out, tasks=tasks, seed=seed, sample=sample,
                        validation_fraction=validation_fraction, reader=reader, user_column=user_column,
                        allow_single_class=allow_single_class)  # fmt: skip

    data, _ = cached_dataset(root, args=args, sources=sources, build=build)
    return data


def _prepare(frames, fmt, files, *, out, tasks, seed, sample, validation_fraction, reader, user_column,
             allow_single_class) -> MultiTaskData:  # fmt: skip
    if "frame" in frames:
        frame = frames.pop("frame")
        splits = frames
        sources = {k: str(v) for k, v in files.items()}
        description = "the published train/val/test files"
    elif "validation" in frames:
        frame, parts = concat_frames([frames.pop("train"), frames.pop("validation"), frames.pop("test")], consume=True)
        splits = dict(zip(("train", "validation", "test"), parts))
        sources = {k: str(v) for k, v in files.items()}
        description = "the published train/val/test files"
    else:
        frame, (train_rows, test_rows) = concat_frames([frames.pop("train"), frames.pop("test")], consume=True)
        keep, held = permutation_split(len(train_rows), (1 - validation_fraction, validation_fraction), seed)
        splits = {"train": train_rows[keep], "validation": train_rows[held], "test": test_rows}
        sources = {"train": "train files", "validation": "part of the train files", "test": "test files"}
        description = (
            f"train files permuted with default_rng({seed}), {validation_fraction:g} of them held out "
            "for validation; the published test files"
        )
    labels, specs = esmm_task_labels(frame, tasks)
    numeric = [c for c in COLUMNS[fmt][1] if c not in LABELS]
    users = frame.categorical[user_column].codes.astype(np.int64) if user_column else None
    info = {
        "dataset": DATASET,
        "format": fmt,
        "sample": bool(sample),
        "protocol": f"{fmt}: {description}",
        "seed": seed,
        "files": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in files.items()},
        "reader": reader,
        "user_column": user_column or None,
    }
    return build_multitask_data(
        frame, splits, labels=labels, tasks=specs, categorical=list(SPARSE_FIELDS), numeric=numeric, info=info,
        allow_single_class=allow_single_class, split_sources=sources, users=users, out=out,
    )  # fmt: skip


def _read_with_tfds(fmt: str, files: dict, cache_dir) -> dict[str, Frame]:
    from mtl.data.builders.ali_ccp import AliCcp
    from mtl.data.builders.columnar import prepare, read_frame

    flat = [p for v in files.values() for p in (v if isinstance(v, list) else [v])]
    folder = pathlib.Path(flat[0]).parent
    if fmt == "paddlerec" and folder.name in ("train", "test"):
        folder = folder.parent
    data_dir = paths.cache_root(cache_dir) / "tfds" / paths.fingerprint(flat, "v1")
    builder = prepare(AliCcp, data_dir=data_dir, manual_dir=folder, config=fmt)
    return {split: read_frame(builder, split) for split in files}
