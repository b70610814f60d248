"""Any delimited text file with a header as a multi-task dataset.

    data = mtl.data.load("tabular", path="clicks.csv", label_columns="click,purchase")

or from the command line::

    python -m mtl.train --config=experiments/configs/tabular.py \\
        --config.data.path=clicks.csv --config.data.label_columns=click,purchase --workdir=/tmp/run

What it does, in order:

1. Reads ``path`` (and ``validation_path`` / ``test_path`` when given) with the
   :mod:`csv` module. ``delimiter=""`` detects one of ``, \\t ; |`` from the
   first lines; a given delimiter that leaves the header as one column while
   another candidate would split it is an error that names the likely delimiter.
   Fields are stripped of surrounding whitespace.
2. Labels: ``label_columns``; those in ``regression_columns`` are real-valued,
   the others binary and must be 0 or 1 (``0.0``/``1.0`` accepted).
3. Features: every other column except ``drop_columns``. ``categorical_columns``
   and ``numeric_columns`` fix a column's type; the rest are inferred (and printed
   as a table): numeric when every non-missing value parses as a number and the
   values are not all integers, or there are more than ``max_categorical_distinct``
   distinct integers; categorical otherwise.
4. Missing values (empty, ``NA``, ``N/A``, ``nan``, ``null``, ``none``, ``?``, in
   lower, UPPER, Capitalized or Title case): a numeric one becomes the training mean (optionally with a 0/1
   ``<name>:missing`` column, ``missing_indicators=True``); a categorical one is
   the token ``<missing>``. A missing label is an error.
5. Splits: a ``default_rng(seed)`` permutation of the rows cut by the ``split``
   fractions (train, validation, test); or the given files: with both
   ``validation_path`` and ``test_path`` the main file is all training data; with
   one of them the main file is cut into train and the other split in the ratio
   of their fractions.
6. Vocabularies (id 0 = out of vocabulary), hashing (``hash_buckets``) and
   numeric scaling from the training split only (:mod:`mtl.data.preprocess`).

Every problem raises :class:`~mtl.data.errors.DataError` naming the file, the
1-based line and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys
from typing import Sequence

import numpy as np

from mtl.data.base import MultiTaskData, TaskSpec
from mtl.data.errors import DataError
from mtl.data.frame import Frame, concat_frames, factorize
from mtl.data.preprocess import (
    MISSING_TOKEN,
    build_multitask_data,
    parse_fractions,
    permutation_split,
    split_list,
)

CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
MISSING_VALUES = ("", "na", "n/a", "nan", "null", "none", "?")
_MISSING_VARIANTS = sorted({v for m in MISSING_VALUES for v in (m, m.upper(), m.capitalize(), m.title())})
_SNIFF_LINES = 20

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _delimiter_name(d: str) -> str:
    return {"\t": "\\t (tab)", ",": "',' (comma)", ";": "';' (semicolon)", "|": "'|' (pipe)"}.get(d, repr(d))


@dataclasses.dataclass
class RawFile:
    """A delimited file as stripped string columns."""

    path: str
    header: list[str]
    columns: dict[str, np.ndarray]  # name -> (N,) str, stripped
    lines: np.ndarray  # (N,) 1-based line number of each data row
    delimiter: str

    @property
    def num_rows(self) -> int:
        return int(self.lines.shape[0])


def _count_fields(line: str, delimiter: str) -> int:
    return len(next(csv.reader([line], delimiter=delimiter), []))


def detect_delimiter(path: str, head: list[str]) -> str:
    """The candidate that splits the header and the first lines into the same number (> 1) of fields."""
    best, best_fields = None, 1
    for d in CANDIDATE_DELIMITERS:
        counts = [_count_fields(line, d) for line in head if line.strip()]
        if counts and counts[0] > best_fields and all(c == counts[0] for c in counts):
            best, best_fields = d, counts[0]
    if best is None:  # no consistent candidate: take the one that splits the header most
        scores = [(_count_fields(head[0], d), d) for d in CANDIDATE_DELIMITERS]
        fields, d = max(scores, key=lambda s: s[0])
        if fields > 1:
            return d
        raise DataError(
            f"cannot detect the delimiter: the header {head[0][:80]!r} does not split on any of "
            f"{', '.join(_delimiter_name(c) for c in CANDIDATE_DELIMITERS)}; a multi-task file needs "
            "label and feature columns. Pass delimiter=... if it uses another one.",
            path=path,
            line=1,
        )
    return best


def read_delimited(path: str | os.PathLike, *, delimiter: str = "") -> RawFile:
    """Reads a delimited file with a header into stripped string columns (see the module docstring)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("file not found", path=path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        text = f.read()
    if not text.strip():
        raise DataError("file is empty", path=path)
    all_lines = text.splitlines()
    first = next(i for i, line in enumerate(all_lines) if line.strip())
    head = all_lines[first : first + _SNIFF_LINES]
    if not delimiter:
        delimiter = detect_delimiter(path, head)
    elif len(delimiter) != 1:
        raise DataError(f"delimiter must be one character, got {delimiter!r}", path=path)
    else:
        if _count_fields(head[0], delimiter) == 1:
            others = [d for d in CANDIDATE_DELIMITERS if d != delimiter and _count_fields(head[0], d) > 1]
            if others:
                raise DataError(
                    f"the header parses to a single column with delimiter {_delimiter_name(delimiter)}, but it "
                    f"contains {_delimiter_name(others[0])}: the file looks {_delimiter_name(others[0])}-delimited. "
                    f"Pass delimiter={others[0]!r} (or '' to detect it).",
                    path=path,
                    line=first + 1,
                )
    if '"' in text:  # quoted fields may span lines: let csv count the lines
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        records, lines = [], []
        for record in reader:
            if record and (len(record) > 1 or record[0].strip()):
                records.append(record)
                lines.append(reader.line_num)
    else:  # the common case, about twice as fast: one record per non-blank line
        numbered = [(i + 1, line) for i, line in enumerate(all_lines) if line.strip()]
        records = [line.split(delimiter) for _, line in numbered]
        lines = [i for i, _ in numbered]
        del numbered
    del all_lines, text
    header = [h.strip() for h in records[0]]
    _check_header(header, path, lines[0])
    width = len(header)
    bad = next((k for k, r in enumerate(records) if len(r) != width), None)
    if bad is not None:
        raise DataError(
            f"has {len(records[bad])} fields, the header has {width} (delimiter {_delimiter_name(delimiter)})",
            path=path,
            line=lines[bad],
        )
    if len(records) == 1:
        raise DataError("has a header but no data rows", path=path)
    columns = {name: np.char.strip(np.array(col, dtype=str)) for name, col in zip(header, zip(*records[1:]))}
    del records
    lines = lines[1:]
    return RawFile(path, header, columns, np.asarray(lines, np.int64), delimiter)


def _check_header(header: list[str], path: str, line: int) -> None:
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise DataError(f"header has empty column names at positions {empty}", path=path, line=line)
    seen, dupes = set(), []
    for h in header:
        if h in seen:
            dupes.append(h)
        seen.add(h)
    if dupes:
        raise DataError(f"header repeats column names {sorted(set(dupes))}", path=path, line=line)


def missing_mask(values: np.ndarray) -> np.ndarray:
    return np.isin(values, _MISSING_VARIANTS)


def _first_non_number(values: np.ndarray, candidates: np.ndarray) -> int:
    for i in np.flatnonzero(candidates):
        if not _parses(values[i]):
            return int(i)
    raise AssertionError("no bad value found")


def parse_numbers(raw: RawFile, column: str, *, what: str = "numeric column") -> np.ndarray:
    """A column as float64 with NaN for missing values; a non-number is a :class:`DataError`."""
    values = raw.columns[column]
    missing = missing_mask(values)
    try:
        if _has_underscore(values):  # float() accepts '1_000'; a data file should not
            raise ValueError
        return np.where(missing, "nan", values).astype(np.float64)
    except ValueError:
        i = _first_non_number(values, ~missing)
        raise DataError(
            f"value {str(values[i])!r} in {what} is not a number", path=raw.path, line=int(raw.lines[i]), column=column
        )


def parse_label(raw: RawFile, column: str, kind: str) -> np.ndarray:
    """A label column: binary labels must be 0 or 1, regression labels numbers; none may be missing."""
    values = raw.columns[column]
    missing = missing_mask(values)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"label value is missing ({str(values[i])!r}; {int(missing.sum())} such rows)",
            path=raw.path,
            line=int(raw.lines[i]),
            column=column,
        )
    try:
        if _has_underscore(values):
            raise ValueError
        x = values.astype(np.float64)
    except ValueError:
        i = _first_non_number(values, np.ones(len(values), bool))
        expect = "0 or 1 (binary task)" if kind == "binary" else "a number (regression task)"
        raise DataError(
            f"label value {str(values[i])!r} is not {expect}", path=raw.path, line=int(raw.lines[i]), column=column
        )
    if kind == "binary":
        bad = np.flatnonzero((x != 0) & (x != 1))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"label value {str(values[i])!r} is not 0 or 1 (binary task; {bad.size} such rows). "
                "List the column in regression_columns if it is real-valued.",
                path=raw.path,
                line=int(raw.lines[i]),
                column=column,
            )
    elif not np.all(np.isfinite(x)):
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise DataError(
            f"label value {str(values[i])!r} is not finite", path=raw.path, line=int(raw.lines[i]), column=column
        )
    return x


def infer_column_type(values: np.ndarray, *, max_categorical_distinct: int) -> tuple[str, str]:
    """``("numeric" | "categorical", reason)`` for a column of stripped strings."""
    present = values[~missing_mask(values)]
    if present.size == 0:
        return "categorical", "all values missing"
    try:
        if _has_underscore(present):
            raise ValueError
        x = present.astype(np.float64)
    except ValueError:
        example = next((str(v) for v in present[:10000] if not _parses(v)), "")
        return "categorical", f"non-numeric values (e.g. {example[:20]!r})"
    if not np.all(np.isfinite(x)):
        return "categorical", "non-finite numbers"
    distinct = np.unique(x).size
    if not np.all(x == np.round(x)):
        return "numeric", f"non-integer numbers, {distinct} distinct"
    if distinct > max_categorical_distinct:
        return "numeric", f"{distinct} distinct integers > {max_categorical_distinct}"
    return "categorical", f"{distinct} distinct integers <= {max_categorical_distinct}"


def _parses(v: str) -> bool:
    if "_" in v:
        return False
    try:
        float(v)
        return True
    except ValueError:
        return False


def _has_underscore(values: np.ndarray) -> bool:
    return bool(values.size) and bool((np.char.find(values, "_") >= 0).any())


def _missing_column_error(path: str, names: Sequence[str], header: Sequence[str], role: str) -> DataError:
    available = ", ".join(header)
    return DataError(f"{role} {list(names)} not in the header; available columns: {available}", path=path, line=1)


def format_column_table(rows: list[tuple[str, str, str, str]]) -> str:
    """A plain-text table of ``(column, role, decided by, detail)`` rows."""
    head = ("column", "role", "decided by", "detail")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def load_tabular(
    *,
    path: str = "",
    label_columns: str | Sequence[str] = "",
    regression_columns: str | Sequence[str] = "",
    categorical_columns: str | Sequence[str] = "",
    numeric_columns: str | Sequence[str] = "",
    drop_columns: str | Sequence[str] = "",
    delimiter: str = "",
    split: str | Sequence[float] = "0.8,0.1,0.1",
    seed: int = 0,
    validation_path: str = "",
    test_path: str = "",
    hash_buckets: int = 0,
    hash_threshold: int | None = None,
    missing_indicators: bool = False,
    max_categorical_distinct: int = 50,
    allow_single_class: bool = False,
    verbose: bool = True,
) -> MultiTaskData:
    """Loads a delimited file as a multi-task dataset; see the module docstring.

    Args:
      path: the data file (the training file when ``validation_path`` and
        ``test_path`` are both given).
      label_columns: task label columns, comma-separated or a list, in task order.
      regression_columns: the labels that are real-valued (the others are binary 0/1).
      categorical_columns, numeric_columns: force a feature column's type.
      drop_columns: columns that are neither labels nor features (ids, leaks).
      delimiter: one character, or ``""`` to detect among ``, \\t ; |``.
      split: train, validation, test fractions (comma-separated or a sequence).
      seed: seeds the row permutation of the split.
      validation_path, test_path: optional separate files with the same columns.
      hash_buckets: if > 0, a categorical column with more than ``hash_threshold``
        (default ``hash_buckets``) distinct training values is hashed into this many ids.
      missing_indicators: add ``<name>:missing`` 0/1 columns for numeric columns
        with missing training values.
      max_categorical_distinct: integer-valued columns with more distinct values
        than this are inferred numeric.
      allow_single_class: allow a binary task with one class in some split.
      verbose: print the column table.
    """
    if not path:
        raise DataError(
            "tabular: no data file given; pass path=FILE (on the command line --config.data.path=FILE)"
        )
    labels = split_list(label_columns)
    if not labels:
        raise DataError(
            "tabular: no label columns given; pass label_columns='a,b' (--config.data.label_columns=a,b)", path=path
        )
    regression = split_list(regression_columns)
    forced_cat, forced_num = split_list(categorical_columns), split_list(numeric_columns)
    dropped = split_list(drop_columns)

    main = read_delimited(path, delimiter=delimiter)
    others = {}
    for split_name, p in (("validation", validation_path), ("test", test_path)):
        if p:
            others[split_name] = read_delimited(p, delimiter=delimiter or main.delimiter)
    header = main.header
    for raw in others.values():
        if set(raw.header) != set(header):
            raise DataError(
                f"columns differ from {main.path}: missing {sorted(set(header) - set(raw.header))}, "
                f"extra {sorted(set(raw.header) - set(header))}",
                path=raw.path,
                line=1,
            )

    absent = [c for c in labels if c not in header]
    if absent:
        raise _missing_column_error(main.path, absent, header, "label columns")
    for role, names in (
        ("regression_columns", regression),
        ("categorical_columns", forced_cat),
        ("numeric_columns", forced_num),
        ("drop_columns", dropped),
    ):
        absent = [c for c in names if c not in header]
        if absent:
            raise _missing_column_error(main.path, absent, header, role)
    not_labels = [c for c in regression if c not in labels]
    if not_labels:
        raise DataError(f"regression_columns {not_labels} are not among label_columns {labels}", path=main.path)
    roles = (("categorical_columns", forced_cat), ("numeric_columns", forced_num), ("drop_columns", dropped))
    for role, names in roles:
        clash = [c for c in names if c in labels]
        if clash:
            raise DataError(
                f"{role} {clash} are label columns; a label cannot also be a feature or dropped", path=main.path
            )
    both = sorted(set(forced_cat) & set(forced_num))
    if both:
        raise DataError(f"columns {both} are in both categorical_columns and numeric_columns", path=main.path)

    files = [main] + list(others.values())
    features = [c for c in header if c not in labels and c not in dropped]
    if not features:
        raise DataError(f"no feature columns left after labels {labels} and drop_columns {dropped}", path=main.path)
    kinds, table = {}, []
    for c in labels:
        kind = "regression" if c in regression else "binary"
        table.append((c, f"label ({kind})", "label_columns", ""))
    for c in features:
        if c in forced_cat:
            kinds[c] = "categorical"
            table.append((c, "categorical", "categorical_columns", ""))
        elif c in forced_num:
            kinds[c] = "numeric"
            table.append((c, "numeric", "numeric_columns", ""))
        else:
            values = np.concatenate([raw.columns[c] for raw in files])
            kinds[c], reason = infer_column_type(values, max_categorical_distinct=max_categorical_distinct)
            table.append((c, kinds[c], "inferred", reason))
    for c in dropped:
        table.append((c, "dropped", "drop_columns", ""))
    if verbose:
        print(f"tabular: columns of {main.path} (delimiter {_delimiter_name(main.delimiter)}, {main.num_rows} rows)")
        print(format_column_table(table))
        print("(override with categorical_columns=..., numeric_columns=..., drop_columns=...)")

    tasks = [TaskSpec(c, "regression" if c in regression else "binary") for c in labels]
    frames, label_parts = [], []
    for raw in files:
        label_parts.append(np.stack([parse_label(raw, c, t.kind) for c, t in zip(labels, tasks)], axis=1))
        categorical = {}
        for c in features:
            if kinds[c] == "categorical":
                values = raw.columns[c]
                categorical[c] = factorize(np.where(missing_mask(values), MISSING_TOKEN, values))
        numeric = {c: parse_numbers(raw, c) for c in features if kinds[c] == "numeric"}
        frames.append(Frame.single_file(raw.path, categorical, numeric, lines=raw.lines))
    frame, parts = concat_frames(frames)
    label_matrix = np.concatenate(label_parts)

    fractions = parse_fractions(split)
    names = ("train", "validation", "test")
    if len(others) == 2:
        splits = {"train": parts[0], "validation": parts[1], "test": parts[2]}
        sources = {"train": main.path, "validation": others["validation"].path, "test": others["test"].path}
        protocol = "files"
        description = f"files: train={main.path}, validation={validation_path}, test={test_path}"
    elif len(others) == 1:
        (given, raw), = others.items()
        cut = "validation" if given == "test" else "test"
        f_train, f_cut = fractions[0], fractions[names.index(cut)]
        if f_train + f_cut <= 0:
            raise DataError(f"split {split!r} leaves nothing to cut {cut} from {main.path}", path=main.path)
        total = f_train + f_cut
        train_rows, cut_rows = permutation_split(main.num_rows, (f_train / total, f_cut / total), seed)
        splits = {"train": parts[0][train_rows], cut: parts[0][cut_rows], given: parts[1]}
        sources = {"train": f"part of {main.path}", cut: f"part of {main.path}", given: raw.path}
        protocol = f"random train/{cut} split of one file, {given} file"
        description = (
            f"{main.path} permuted with default_rng({seed}) and cut train:{cut} = {f_train:g}:{f_cut:g}; "
            f"{given} = {raw.path}"
        )
    else:
        idx = permutation_split(main.num_rows, fractions, seed)
        splits = dict(zip(names, idx))
        sources = {k: f"{k} part of {main.path}" for k in names}
        protocol = "random split"
        description = (
            f"{main.path} permuted with default_rng({seed}) and cut "
            f"{'/'.join(f'{x:g}' for x in fractions)} into train/validation/test"
        )
    info = {
        "dataset": "tabular",
        "protocol": protocol,
        "protocol_description": description,
        "seed": seed,
        "files": [raw.path for raw in files],
        "delimiter": main.delimiter,
        "label_columns": labels,
        "column_types": {c: kinds[c] for c in features},
        "dropped_columns": dropped,
    }
    return build_multitask_data(
        frame,
        splits,
        labels=label_matrix,
        tasks=tasks,
        categorical=[c for c in features if kinds[c] == "categorical"],
        numeric=[c for c in features if kinds[c] == "numeric"],
        info=info,
        hash_buckets=int(hash_buckets),
        hash_threshold=None if hash_threshold in (None, 0, "") else int(hash_threshold),
        missing_indicators=missing_indicators,
        allow_single_class=allow_single_class,
        split_sources=sources,
        single_class_hint=(
            "use more rows, another split (split=..., seed=...), separate files (validation_path=, test_path=), "
            "or allow_single_class=True."
        ),
    )


__all__ = ["RawFile", "load_tabular", "read_delimited", "parse_label", "parse_numbers", "infer_column_type"]
