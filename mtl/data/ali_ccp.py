"""Ali-CCP (Alibaba Click and Conversion Prediction), the ESMM dataset.

    data = mtl.data.load("ali_ccp", data_dir=..., tasks="click,ctcvr")

The full data (about 42M train and 43M test impressions) is on Alibaba Tianchi
(dataset 408, https://tianchi.aliyun.com/dataset/408), behind a login: nothing
is downloaded here. Two public preprocessed formats are read:

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
from mtl.data.errors import DataError
from mtl.data.frame import Frame, cached, concat_frames, factorize
from mtl.data.preprocess import MISSING_TOKEN, build_multitask_data, esmm_task_labels, permutation_split
from mtl.data.tabular import parse_label, parse_numbers, read_delimited

DATASET = "ali_ccp"
FORMATS = ("auto", "torch_rechub", "paddlerec")
HOW_TO_GET = (
    "Ali-CCP is distributed by Alibaba Tianchi (https://tianchi.aliyun.com/dataset/408, login required); "
    "preprocess it with torch-rechub (ali_ccp_{train,val,test}.csv) or PaddleRec (train/*.txt, test/*.txt) "
    "and put the files in $MTL_DATA_DIR/ali_ccp/, or pass sample=True to read the public samples."
)

SPARSE_FIELDS = (
    "101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
    "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14",
)  # fmt: skip
DENSE_FIELDS = ("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853")
MULTI_VALUED_FIELDS = ("109_14", "110_14", "127_14", "150_14", "210", "853")
LABELS = ("click", "conversion")

TORCH_RECHUB_FILES = {
    False: {"train": "ali_ccp_train.csv", "validation": "ali_ccp_val.csv", "test": "ali_ccp_test.csv"},
    True: {
        "train": "ali_ccp_train_sample.csv",
        "validation": "ali_ccp_val_sample.csv",
        "test": "ali_ccp_test_sample.csv",
    },
}
PADDLEREC_FILES = {False: ("train.txt", "test.txt"), True: ("train_small.txt", "test_small.txt")}

# Raw frame columns (also the TFDS builder's columns), per format.
COLUMNS = {
    "torch_rechub": (SPARSE_FIELDS, DENSE_FIELDS + LABELS),
    "paddlerec": (SPARSE_FIELDS, tuple(f"n_{f}" for f in MULTI_VALUED_FIELDS) + LABELS),
}


def torch_rechub_files_in(folder: pathlib.Path, sample: bool) -> dict[str, pathlib.Path] | None:
    """The three torch-rechub files (full or sample) in ``folder``, or ``None``."""
    files = {k: folder / name for k, name in TORCH_RECHUB_FILES[sample].items()}
    return files if all(p.is_file() for p in files.values()) else None


def paddlerec_files_in(folder: pathlib.Path, sample: bool) -> dict[str, list[pathlib.Path]] | None:
    """PaddleRec ESMM train and test files (full or sample) in ``folder``, or ``None``."""
    train_name, test_name = PADDLEREC_FILES[sample]
    if (folder / train_name).is_file() and (folder / test_name).is_file():
        return {"train": [folder / train_name], "test": [folder / test_name]}
    if not sample:
        train, test = sorted((folder / "train").glob("*.txt")), sorted((folder / "test").glob("*.txt"))
        if train and test:
            return {"train": train, "test": test}
    else:
        train, test = folder / "train" / "small.txt", folder / "test" / "small.txt"
        if train.is_file() and test.is_file():
            return {"train": [train], "test": [test]}
    return None


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


def read_torch_rechub_file(path: str | os.PathLike) -> Frame:
    """One torch-rechub Ali-CCP CSV as a frame (labels renamed ``click``, ``conversion``)."""
    raw = read_delimited(path, delimiter=",")
    expected = ("click", "purchase") + SPARSE_FIELDS + DENSE_FIELDS
    missing = [c for c in expected if c not in raw.header]
    if missing:
        raise DataError(
            f"not a torch-rechub Ali-CCP file: columns {missing} are missing; header: {', '.join(raw.header)}",
            path=raw.path,
            line=1,
        )
    categorical = {f: factorize(raw.columns[f]) for f in SPARSE_FIELDS}
    numeric = {f: parse_numbers(raw, f) for f in DENSE_FIELDS}
    numeric["click"] = parse_label(raw, "click", "binary")
    numeric["conversion"] = parse_label(raw, "purchase", "binary")
    return Frame.single_file(raw.path, categorical, numeric, lines=raw.lines)


def read_paddlerec_file(path: str | os.PathLike) -> Frame:
    """One PaddleRec ESMM text file as a frame (see the module docstring)."""
    path = os.fspath(path)
    field_index = {f: j for j, f in enumerate(SPARSE_FIELDS)}
    multi = {f: j for j, f in enumerate(MULTI_VALUED_FIELDS)}
    firsts: list[list[str]] = [[] for _ in SPARSE_FIELDS]
    counts: list[list[int]] = [[] for _ in MULTI_VALUED_FIELDS]
    labels: list[tuple[float, float]] = []
    lines: list[int] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(",")
            if len(fields) < 3:
                raise DataError(
                    f"has {len(fields)} fields; expected id,click,conversion,field:feature,...", path=path, line=number
                )
            label = []
            for name, value in zip(LABELS, fields[1:3]):
                if value not in ("0", "1"):
                    raise DataError(
                        f"label value {value!r} is not 0 or 1 (binary task)", path=path, line=number, column=name
                    )
                label.append(float(value))
            first: dict[str, str] = {}
            count = [0] * len(MULTI_VALUED_FIELDS)
            for item in fields[3:]:
                field, sep, feature = item.partition(":")
                if not sep:
                    raise DataError(f"feature {item!r} is not field_id:feature_id", path=path, line=number)
                if field not in field_index:
                    continue
                first.setdefault(field, feature)
                if field in multi:
                    count[multi[field]] += 1
            for f, j in field_index.items():
                firsts[j].append(first.get(f, MISSING_TOKEN))
            for j, c in enumerate(count):
                counts[j].append(c)
            labels.append(tuple(label))
            lines.append(number)
    if not lines:
        raise DataError("file is empty", path=path)
    categorical = {f: factorize(firsts[j]) for j, f in enumerate(SPARSE_FIELDS)}
    numeric = {f"n_{f}": np.asarray(counts[j], np.float64) for j, f in enumerate(MULTI_VALUED_FIELDS)}
    label_array = np.asarray(labels, np.float64)
    numeric["click"], numeric["conversion"] = label_array[:, 0], label_array[:, 1]
    return Frame.single_file(path, categorical, numeric, lines=lines)


READERS = {"torch_rechub": read_torch_rechub_file, "paddlerec": read_paddlerec_file}


def read_split(format: str, files, *, cache_dir=None) -> Frame:
    """One split's file(s) as a frame, through the columnar cache."""
    files = files if isinstance(files, list) else [files]
    root = paths.cache_root(cache_dir) / DATASET
    frames = [
        cached(root / f"{format}-{paths.fingerprint([p], 'v1')}.npz", lambda p=p: READERS[format](p)) for p in files
    ]
    return frames[0] if len(frames) == 1 else concat_frames(frames)[0]


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
    """
    fmt, files = find_ali_ccp_files(data_dir, format=format, sample=sample)
    if reader == "tfds":
        frames = _read_with_tfds(fmt, files, cache_dir)
    elif reader == "fast":
        frames = {split: read_split(fmt, f, cache_dir=cache_dir) for split, f in files.items()}
    else:
        raise ValueError(f"reader must be 'fast' or 'tfds', got {reader!r}")
    if "validation" in frames:
        frame, parts = concat_frames([frames["train"], frames["validation"], frames["test"]])
        splits = dict(zip(("train", "validation", "test"), parts))
        sources = {k: str(v) for k, v in files.items()}
        description = "the published train/val/test files"
    else:
        frame, (train_rows, test_rows) = concat_frames([frames["train"], frames["test"]])
        keep, held = permutation_split(len(train_rows), (1 - validation_fraction, validation_fraction), seed)
        splits = {"train": train_rows[keep], "validation": train_rows[held], "test": test_rows}
        sources = {"train": "train files", "validation": "part of the train files", "test": "test files"}
        description = (
            f"train files permuted with default_rng({seed}), {validation_fraction:g} of them held out "
            "for validation; the published test files"
        )
    labels, specs = esmm_task_labels(frame, tasks)
    numeric = [c for c in COLUMNS[fmt][1] if c not in LABELS]
    info = {
        "dataset": DATASET,
        "format": fmt,
        "sample": bool(sample),
        "protocol": f"{fmt}: {description}",
        "seed": seed,
        "files": {k: [str(p) for p in v] if isinstance(v, list) else str(v) for k, v in files.items()},
        "reader": reader,
    }
    return build_multitask_data(
        frame, splits, labels=labels, tasks=specs, categorical=list(SPARSE_FIELDS), numeric=numeric, info=info,
        allow_single_class=allow_single_class, split_sources=sources,
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
