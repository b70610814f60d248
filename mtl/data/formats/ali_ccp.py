"""Ali-CCP (ESMM): the two public preprocessed formats, file layouts and raw readers.

* ``torch_rechub``: ``ali_ccp_{train,val,test}.csv`` with a header: labels
  ``click`` and ``purchase`` (the conversion), 23 label-encoded sparse fields
  (:data:`SPARSE_FIELDS`) and 8 dense fields (:data:`DENSE_FIELDS`).
* ``paddlerec``: PaddleRec's ESMM text, one impression per line,
  ``id,click,conversion,field:feature,field:feature,...``. Every field of
  :data:`SPARSE_FIELDS` becomes a categorical column holding the field's FIRST
  feature id on the line (``<missing>`` when absent); the fields that carry many ids
  (:data:`MULTI_VALUED_FIELDS`) also get a numeric column ``n_<field>`` with their
  count. Unknown field ids are skipped. Blank lines are skipped; lines end with
  ``\\n``, ``\\r\\n`` or ``\\r``; each line is stripped of surrounding whitespace.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl.data.delimited import (
    Column,
    StringColumn,
    check_structure,
    factor_of,
    locate_utf8_error,
    read_columns,
    read_files,
    read_header,
)
from mtl.data.errors import DataError
from mtl.data.frame import MISSING_TOKEN, Frame, concat_frames

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

TORCH_RECHUB_FILES = {
    False: {"train": "ali_ccp_train.csv", "validation": "ali_ccp_val.csv", "test": "ali_ccp_test.csv"},
    True: {
        "train": "ali_ccp_train_sample.csv",
        "validation": "ali_ccp_val_sample.csv",
        "test": "ali_ccp_test_sample.csv",
    },
}
PADDLEREC_FILES = {False: ("train.txt", "test.txt"), True: ("train_small.txt", "test_small.txt")}

#: Raw frame columns (also the TFDS builder's columns) per format: (categorical, numeric).
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


def _torch_rechub_columns() -> dict[str, Column]:
    columns = {f: Column("factor") for f in SPARSE_FIELDS}
    columns.update({f: Column("number") for f in DENSE_FIELDS})
    columns.update({c: Column("label", task="binary") for c in ("click", "purchase")})
    return columns


def read_torch_rechub_files(paths) -> Frame:
    """Several torch-rechub CSVs (train, val, test) as one frame, rows file by file
    (``frame.source_ids``); read together when every file is plain, else file by file (the
    first problem is then named exactly as :func:`read_torch_rechub_file` names it)."""
    try:
        headers = [read_header(p, delimiter=",") for p in paths]
    except DataError:
        headers = []  # read file by file: problems inside earlier files are named first
    expected = ("click", "purchase") + SPARSE_FIELDS + DENSE_FIELDS
    if headers and all(c in h.names for h in headers for c in expected):
        table = read_files(headers, _torch_rechub_columns())
        if table is not None:
            numeric = {f: table.numbers[f] for f in DENSE_FIELDS}
            numeric["click"], numeric["conversion"] = table.labels["click"], table.labels["purchase"]
            categorical = {f: table.factors[f] for f in SPARSE_FIELDS}
            return Frame(categorical, numeric, table.sources, table.source_ids, table.lines, table.block,
                         table.block_columns)  # fmt: skip
    return concat_frames([read_torch_rechub_file(p) for p in paths], consume=True)[0]


def read_torch_rechub_file(path: str | os.PathLike) -> Frame:
    """One torch-rechub Ali-CCP CSV as a frame (labels renamed ``click``, ``conversion``)."""
    header = read_header(path, delimiter=",")
    expected = ("click", "purchase") + SPARSE_FIELDS + DENSE_FIELDS
    missing = [c for c in expected if c not in header.names]
    if missing:
        check_structure(header)  # a broken record is reported first, as it always was
        raise DataError(
            f"not a torch-rechub Ali-CCP file: columns {missing} are missing; header: {', '.join(header.names)}",
            path=header.path,
            line=1,
        )
    table = read_columns(header, _torch_rechub_columns())
    table.raise_first(DENSE_FIELDS + ("click", "purchase"))
    numeric = {f: table.numbers[f] for f in DENSE_FIELDS}
    numeric["click"], numeric["conversion"] = table.labels["click"], table.labels["purchase"]
    frame = Frame.single_file(header.path, {f: table.factors[f] for f in SPARSE_FIELDS}, numeric, lines=table.lines)
    frame.block, frame.block_columns = table.block, table.block_columns
    return frame


# ---------------------------------------------------------------- PaddleRec text

_CHUNK_BYTES = 32 << 20
_FIELD_IDS = pa.array(SPARSE_FIELDS)
_MULTI = np.array([f in MULTI_VALUED_FIELDS for f in SPARSE_FIELDS])
# sparse field index -> its position in MULTI_VALUED_FIELDS (0 for the others, never used)
_MULTI_INDEX = np.array([MULTI_VALUED_FIELDS.index(f) if f in MULTI_VALUED_FIELDS else 0 for f in SPARSE_FIELDS])


def read_paddlerec_file(path: str | os.PathLike) -> Frame:
    """One PaddleRec ESMM text file as a frame (see the module docstring).

    Lines are cut and split with pyarrow's string kernels a chunk at a time; a file
    with carriage returns, undecodable bytes or a malformed line is read line by
    line instead (the exact path), which names the first bad line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("file not found", path=path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\r" in head or head[:2] == b"\x1f\x8b":
        return _read_paddlerec_exact(path)
    firsts = [StringColumn() for _ in SPARSE_FIELDS]
    counts, labels, lines = [], [], []
    line = 1  # the line each chunk starts on
    carry = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK_BYTES)
            final = not chunk
            data = carry + chunk
            if not final:
                cut = data.rfind(b"\n") + 1
                data, carry = data[:cut], data[cut:]
            if data:
                if b"\r" in data:
                    return _read_paddlerec_exact(path)
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    return _read_paddlerec_exact(path)
                parsed = _paddlerec_chunk(text, line)
                if parsed is None:
                    return _read_paddlerec_exact(path)
                chunk_firsts, chunk_counts, chunk_labels, chunk_lines, num_lines = parsed
                for column, values in zip(firsts, chunk_firsts):
                    column.add(values)
                counts.append(chunk_counts)
                labels.append(chunk_labels)
                lines.append(chunk_lines)
                line += num_lines
            if final:
                break
    lines = np.concatenate(lines) if lines else np.zeros(0, np.int64)
    if not len(lines):
        raise DataError("file is empty", path=path)
    categorical = {f: factor_of(column, path=path, lines=lines, column=f, strip=False)
                   for f, column in zip(SPARSE_FIELDS, firsts)}  # fmt: skip
    count_matrix = np.concatenate(counts)
    numeric = {f"n_{f}": count_matrix[:, j].astype(np.float32) for j, f in enumerate(MULTI_VALUED_FIELDS)}
    label_matrix = np.concatenate(labels)
    numeric["click"], numeric["conversion"] = label_matrix[:, 0], label_matrix[:, 1]
    return Frame.single_file(path, categorical, numeric, lines=lines)


def _paddlerec_chunk(text: str, first_line: int):
    """One chunk of whole lines: per-field first ids, counts, labels and line numbers; ``None``
    when a line is malformed (the exact path then names it)."""
    pieces = pc.list_flatten(pc.split_pattern(pa.array([text]), "\n"))
    if text.endswith("\n"):
        pieces = pieces.slice(0, len(pieces) - 1)  # the empty piece after the last line end
    num_lines = len(pieces)
    stripped = pc.utf8_trim_whitespace(pieces)
    keep = np.flatnonzero(pc.utf8_length(stripped).to_numpy(zero_copy_only=False) > 0)
    line_numbers = first_line + keep.astype(np.int64)
    records = pc.split_pattern(stripped.take(pa.array(keep)), ",")
    n = len(records)
    widths = pc.list_value_length(records).to_numpy(zero_copy_only=False)
    if n and widths.min() < 3:
        return None
    label_values = []
    for k in (1, 2):
        element = pc.list_element(records, k)
        is_one = pc.equal(element, "1").to_numpy(zero_copy_only=False)
        if not (is_one | pc.equal(element, "0").to_numpy(zero_copy_only=False)).all():
            return None
        label_values.append(is_one.astype(np.float32))
    items = pc.list_slice(records, 3)
    flat = pc.list_flatten(items)
    parent = pc.list_parent_indices(items).to_numpy(zero_copy_only=False).astype(np.int64)
    if len(flat) and not pc.all(pc.match_substring(flat, ":")).as_py():
        return None
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
    return firsts, counts, np.stack(label_values, axis=1), line_numbers, num_lines


def _read_paddlerec_exact(path: str) -> Frame:
    """The line-by-line reader: exact rules and the first bad line named."""
    field_index = {f: j for j, f in enumerate(SPARSE_FIELDS)}
    multi = {f: j for j, f in enumerate(MULTI_VALUED_FIELDS)}
    firsts: list[list[str]] = [[] for _ in SPARSE_FIELDS]
    counts: list[list[int]] = [[] for _ in MULTI_VALUED_FIELDS]
    labels: list[tuple[float, float]] = []
    lines: list[int] = []
    with open(path, encoding="utf-8", errors="strict") as fh:
        number = 0
        while True:
            try:
                line = fh.readline()
            except UnicodeDecodeError:
                raise locate_utf8_error(path) from None
            if not line:
                break
            number += 1
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
    categorical = {}
    for j, f in enumerate(SPARSE_FIELDS):
        column = StringColumn()
        column.add(pa.array(firsts[j], pa.string()))
        categorical[f] = factor_of(column, path=path, lines=np.asarray(lines), column=f, strip=False)
    numeric = {f"n_{f}": np.asarray(counts[j], np.float32) for j, f in enumerate(MULTI_VALUED_FIELDS)}
    label_array = np.asarray(labels, np.float32)
    numeric["click"], numeric["conversion"] = label_array[:, 0], label_array[:, 1]
    return Frame.single_file(path, categorical, numeric, lines=lines)


READERS = {"torch_rechub": read_torch_rechub_file, "paddlerec": read_paddlerec_file}
