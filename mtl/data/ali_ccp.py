"""Ali-CCP (Alibaba Click and Conversion Prediction), the ESMM dataset, in torch-rechub CSV or PaddleRec
ESMM text: the formats' columns, file layouts and raw readers (also the TFDS builder's,
:mod:`mtl.data.builders.ali_ccp`) and the loader; tasks ``click``, ``conversion`` (``purchase``), ``ctcvr``.
The formats and protocols: ``docs/data.md``, *Ali-CCP and AliExpress*.

    data = mtl.data.load("ali_ccp", data_dir=..., tasks="click,ctcvr")
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl.data import paths
from mtl.data.base import MultiTaskData
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.frame import MISSING_TOKEN, Frame, concat_frames, file_parts
from mtl.data.preprocess import build_multitask_data, esmm_task_labels, permutation_split
from mtl.data.reader import Column, merge_chunks, read_dataset_files, utf8_error

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
#: The user id field (in both formats).
USER_FIELD = "101"

TORCH_RECHUB_FILES = {sample: {split: f"ali_ccp_{name}{'_sample' * sample}.csv" for split, name in (
    ("train", "train"), ("validation", "val"), ("test", "test"))} for sample in (False, True)}  # sample: *_sample.csv
PADDLEREC_FILES = {False: ("train.txt", "test.txt"), True: ("train_small.txt", "test_small.txt")}

#: Raw frame columns (also the TFDS builder's columns) per format: (categorical, numeric).
COLUMNS = {"torch_rechub": (SPARSE_FIELDS, DENSE_FIELDS + LABELS),
           "paddlerec": (SPARSE_FIELDS, tuple(f"n_{f}" for f in MULTI_VALUED_FIELDS) + LABELS)}


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


def read_torch_rechub_files(files) -> Frame:
    """Several torch-rechub CSVs (train, val, test) as one frame, rows file by file (``frame.source_ids``)."""
    columns = {f: Column("factor", integers=True) for f in SPARSE_FIELDS} | {f: Column("number") for f in DENSE_FIELDS}
    columns |= {c: Column("label") for c in ("click", "purchase")}
    table = read_dataset_files(files, columns, what="a torch-rechub Ali-CCP")
    table.numeric.update(click=table.labels["click"], conversion=table.labels["purchase"])
    return table


# ---------------------------------------------------------------- PaddleRec text

_CHUNK_BYTES = 32 << 20
_FIELD_IDS = pa.array(SPARSE_FIELDS)
_MULTI = np.array([f in MULTI_VALUED_FIELDS for f in SPARSE_FIELDS])
# sparse field index -> its position in MULTI_VALUED_FIELDS (0 for the others, never used)
_MULTI_INDEX = np.array([MULTI_VALUED_FIELDS.index(f) if f in MULTI_VALUED_FIELDS else 0 for f in SPARSE_FIELDS])


def read_paddlerec_file(path: str | os.PathLike) -> Frame:
    """One PaddleRec ESMM text file as a frame (rules in docs/data.md, *Ali-CCP and AliExpress*); lines are cut and
    split with pyarrow's string kernels a chunk at a time."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("file not found", path=path)
    firsts = [[] for _ in SPARSE_FIELDS]  # per field, each chunk's dictionary array
    counts, labels, lines = [], [], []
    line, offset, carry = 1, 0, b""  # the line and byte offset each chunk starts on
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            raise DataError("is gzip-compressed; decompress it first (e.g. gunzip)", path=path)
        f.seek(0)
        while True:
            chunk = f.read(_CHUNK_BYTES)
            data = carry + chunk
            if chunk:
                cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
                data, carry = data[:cut], data[cut:]
            if data:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise utf8_error(path, offset, line) from None
                chunk_firsts, chunk_counts, chunk_labels, chunk_lines, num_lines = _paddlerec_chunk(text, line, path)
                for j, array in enumerate(chunk_firsts):
                    firsts[j].append(array)
                counts.append(chunk_counts)
                labels.append(chunk_labels)
                lines.append(chunk_lines)
                line, offset = line + num_lines, offset + len(data)
            if not chunk:
                break
    lines = np.concatenate(lines) if lines else np.zeros(0, np.int64)
    if not len(lines):
        raise DataError("file is empty", path=path)
    categorical = {field: merge_chunks(firsts[j], strip=False) for j, field in enumerate(SPARSE_FIELDS)}
    count_matrix = np.concatenate(counts)
    numeric = {f"n_{f}": count_matrix[:, j].astype(np.float32) for j, f in enumerate(MULTI_VALUED_FIELDS)}
    label_matrix = np.concatenate(labels)
    numeric["click"], numeric["conversion"] = label_matrix[:, 0], label_matrix[:, 1]
    return Frame.single_file(path, categorical, numeric, lines=lines)


def _paddlerec_chunk(text: str, first_line: int, path: str):
    """One chunk of whole lines: per-field first ids, counts, labels, line numbers and the
    number of lines; a malformed line raises a :class:`DataError` naming it."""
    pieces = pc.list_flatten(pc.split_pattern_regex(pa.array([text]), "\r\n|\r|\n"))
    if text.endswith(("\n", "\r")):
        pieces = pieces.slice(0, len(pieces) - 1)  # the empty piece after the last line end
    stripped = pc.utf8_trim_whitespace(pieces)
    keep = np.flatnonzero(pc.utf8_length(stripped).to_numpy(zero_copy_only=False) > 0)
    line_numbers = first_line + keep.astype(np.int64)
    records = pc.split_pattern(stripped.take(pa.array(keep)), ",")
    n = len(records)
    widths = pc.list_value_length(records).to_numpy(zero_copy_only=False)
    if n and widths.min() < 3:
        row = int(np.argmax(widths < 3))
        raise DataError(f"has {widths[row]} fields; expected id,click,conversion,field:feature,...", path=path,
                        line=int(line_numbers[row]))  # fmt: skip
    label_values, problems = [], []
    for k, name in ((1, "click"), (2, "conversion")):
        element = pc.list_element(records, k)
        is_one = pc.equal(element, "1").to_numpy(zero_copy_only=False)
        bad = ~(is_one | pc.equal(element, "0").to_numpy(zero_copy_only=False))
        if bad.any():
            row = int(np.argmax(bad))
            problems.append((row, f"label value {element[row].as_py()!r} is not 0 or 1 (binary task)", name))
        label_values.append(is_one.astype(np.float32))
    items = pc.list_slice(records, 3)
    flat = pc.list_flatten(items)
    parent = pc.list_parent_indices(items).to_numpy(zero_copy_only=False).astype(np.int64)
    colon = pc.match_substring(flat, ":").to_numpy(zero_copy_only=False)
    if not colon.all():
        item = int(np.argmax(~colon))
        problems.append((int(parent[item]), f"feature {flat[item].as_py()!r} is not field_id:feature_id", None))
    if problems:  # the first line with a problem
        row, message, column = min(problems, key=lambda p: p[0])
        raise DataError(message, path=path, line=int(line_numbers[row]), column=column)
    parts = pc.split_pattern(flat, ":", max_splits=1)
    field = pc.index_in(pc.list_element(parts, 0), value_set=_FIELD_IDS)
    feature = pc.list_element(parts, 1)
    known = np.flatnonzero(field.is_valid().to_numpy(zero_copy_only=False))
    fid = field.to_numpy(zero_copy_only=False)[known].astype(np.int64) if len(known) else np.zeros(0, np.int64)
    rows = parent[known]
    width = len(SPARSE_FIELDS)
    key = rows * width + fid
    order = np.argsort(key, kind="stable")  # the first id of each field on each line
    ordered = key[order]
    first = np.ones(len(key), bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keys, first_item = ordered[first], order[first]
    first_feature = feature.take(pa.array(known[first_item]))
    key_field = keys % width
    firsts = []
    for j in range(width):
        sel = np.flatnonzero(key_field == j)
        index = np.full(n, len(sel), np.int32)
        index[keys[sel] // width] = np.arange(len(sel), dtype=np.int32)
        dictionary = pa.concat_arrays([first_feature.take(pa.array(sel)), pa.array([MISSING_TOKEN])])
        firsts.append(pa.DictionaryArray.from_arrays(pa.array(index), dictionary))
    multi = _MULTI[fid]
    counts = np.bincount(rows[multi] * len(MULTI_VALUED_FIELDS) + _MULTI_INDEX[fid[multi]],
                         minlength=n * len(MULTI_VALUED_FIELDS)).reshape(n, len(MULTI_VALUED_FIELDS))  # fmt: skip
    return firsts, counts, np.stack(label_values, axis=1), line_numbers, len(pieces)


READERS = {"torch_rechub": lambda p: read_torch_rechub_files([p]), "paddlerec": read_paddlerec_file}


def find_ali_ccp_files(data_dir=None, *, format: str = "auto", sample: bool = False) -> tuple[str, dict]:
    """``(format, {split: path or [paths]})`` of the first folder that holds files of ``format``."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    finders = {"torch_rechub": torch_rechub_files_in, "paddlerec": paddlerec_files_in}
    formats, errors = ("torch_rechub", "paddlerec") if format == "auto" else (format,), []  # torch-rechub first
    in_sample = None if sample else lambda d: any(finders[g](d, True) for g in formats)  # for the hint
    for f in formats:
        try:
            folder = paths.resolve_dataset_dir(data_dir, dataset="Ali-CCP", folder=DATASET, subfolders=True,
                                               has_files=lambda d, f=f: finders[f](d, sample) is not None,
                                               has_sample=in_sample, how_to_get=HOW_TO_GET)  # fmt: skip
            return f, finders[f](folder, sample)
        except DataError as e:
            errors.append(e)
    raise errors[0]


def load_ali_ccp(*, data_dir: str | os.PathLike | None = None, format: str = "auto", sample: bool = False,
                 tasks: str = "click,conversion", seed: int = 0, validation_fraction: float = 0.1,
                 cache_dir: str | os.PathLike | None = None, allow_single_class: bool = False,
                 user_column: str = "") -> MultiTaskData:  # fmt: skip
    """Ali-CCP as click / conversion / ctcvr tasks. ``format``: ``auto`` (torch-rechub first),
    ``torch_rechub`` or ``paddlerec``; ``seed`` and ``validation_fraction`` cut validation from
    PaddleRec's train; ``user_column``: ``""`` or ``"101"``. The other arguments and the rules:
    ``docs/data.md``, *Ali-CCP and AliExpress*."""
    fmt, files = find_ali_ccp_files(data_dir, format=format, sample=sample)
    if user_column and user_column not in SPARSE_FIELDS:
        raise DataError(f"user_column {user_column!r} is not an Ali-CCP sparse field; the user id is field "
                        f"{USER_FIELD!r} (one of {', '.join(SPARSE_FIELDS)})")  # fmt: skip
    args = dict(format=fmt, sample=bool(sample), tasks=tasks, seed=seed, validation_fraction=validation_fraction,
                allow_single_class=bool(allow_single_class), user_column=user_column)  # fmt: skip
    lists = {k: v if isinstance(v, list) else [v] for k, v in files.items()}
    sources = [p for v in lists.values() for p in v]

    def build(out):
        if fmt == "torch_rechub":  # the three files parsed together into one frame
            frame = read_torch_rechub_files([files["train"], files["validation"], files["test"]])
            parts = file_parts(frame)
        else:  # PaddleRec: train and test each one file or a folder of parts
            frame, parts = concat_frames([read_paddlerec_file(p) for p in lists["train"] + lists["test"]],
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
        info = {"dataset": DATASET, "format": fmt, "sample": bool(sample), "protocol": f"{fmt}: {description}",
                "seed": seed, "files": {k: [str(p) for p in v] if isinstance(v, list) else str(v)
                                        for k, v in files.items()},
                "user_column": user_column or None}  # fmt: skip
        numeric = [c for c in COLUMNS[fmt][1] if c not in LABELS]
        return build_multitask_data(frame, splits, labels=labels, tasks=specs, categorical=list(SPARSE_FIELDS),
                                    numeric=numeric, info=info, allow_single_class=allow_single_class,
                                    split_sources=split_sources, users=users, out=out)  # fmt: skip

    return cached_dataset(paths.cache_root(cache_dir) / DATASET, args=args, sources=sources, build=build)[0]
