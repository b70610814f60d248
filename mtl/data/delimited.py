"""Delimited text files with a header (CSV, TSV, ...) read into typed columns.

The parser is pyarrow's streaming CSV reader (``pyarrow.csv.open_csv``): the file is
read block by block and every block is converted straight into compact columns,
so memory stays near the size of the result. What it produces, and every error,
is defined by these rules (the rules of the project's first, hand-written reader):

* Records: fields separated by one delimiter character; ``"`` quotes a field (a
  doubled ``""`` inside is one quote), which may then hold delimiters and line
  breaks. Lines end with ``\\n``, ``\\r\\n`` or ``\\r``. Blank (empty or
  whitespace-only) lines are skipped. The header is the first non-blank record.
  A UTF-8 byte-order mark is skipped.
* Values are stripped of surrounding whitespace (Python's ``str.strip``).
* Missing values: :data:`MISSING_VALUES` (empty, ``NA``, ``N/A``, ``nan``, ``null``,
  ``none``, ``?``) in lower, UPPER, Capitalized or Title case.
* Numbers parse like Python's ``float`` (``inf``, ``1e5``, ``.5`` included) but
  never with an underscore (``1_000`` is not a number).
* The line of a row is the 1-based line on which its record ends (a record with a
  quoted line break spans several lines).

Errors are :class:`~mtl.data.errors.DataError` s naming the file, the line and the
column. pyarrow reports neither lines nor the first bad value of a column in file
order, so whenever a file is not plain (pyarrow rejects its structure, a value
does not parse, a label is out of range, rows and lines do not correspond one to
one) a slower exact path finds the answer: the same column re-read as distinct
strings, or the whole file tokenised with Python's :mod:`csv` module. Clean files
never take it.

Column kinds (:class:`Column`): ``factor`` (categorical: distinct stripped strings
and int32 codes), ``number`` (float32, NaN for missing), ``label`` (float64; binary
0/1 or a finite regression value, none missing) and ``auto`` (distinct stripped
strings and codes; the caller decides the type from the distinct values,
:func:`infer_column_type`).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io
import os
import re
import sys
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mtl.data.cache import Pipeline
from mtl.data.errors import DataError
from mtl.data.frame import (  # noqa: F401 (StringColumn, MAX_DISTINCT_BYTES re-exported)
    MAX_DISTINCT_BYTES,
    Buffer,
    Factor,
    FactorBuilder,
    NotPlainIntegers,
    StringColumn,
    TooWide,
    merge_values,
)

CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
MISSING_VALUES = ("", "na", "n/a", "nan", "null", "none", "?")
MISSING_VARIANTS = sorted({v for m in MISSING_VALUES for v in (m, m.upper(), m.capitalize(), m.title())})
_SNIFF_LINES = 20
_HEAD_BYTES = 1 << 20
_SCAN_BYTES = 4 << 20
_SLOW_CHUNK_ROWS = 50_000
#: pyarrow block size; rows are converted a block at a time.
BLOCK_SIZE = 1 << 20

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def delimiter_name(d: str) -> str:
    return {"\t": "\\t (tab)", ",": "',' (comma)", ";": "';' (semicolon)", "|": "'|' (pipe)"}.get(d, repr(d))


@dataclasses.dataclass(frozen=True)
class Column:
    """What to make of one column: ``kind`` is ``factor``, ``number``, ``label`` or ``auto``.

    ``task`` (labels): ``binary`` or ``regression``. ``missing_token`` (factor):
    missing values become this one value (``None``: kept as they are).
    """

    kind: str
    task: str = "binary"
    missing_token: str | None = None

    def __post_init__(self):
        if self.kind not in ("factor", "number", "label", "auto"):
            raise ValueError(f"unknown column kind {self.kind!r}")


@dataclasses.dataclass
class Header:
    """A file's header and where its data starts."""

    path: str
    names: list[str]
    delimiter: str
    line: int  # 1-based line on which the header record ends
    data_offset: int  # byte offset of the first data line
    size: int  # file size when the header was read


@dataclasses.dataclass
class Table:
    """The columns asked for, each row's line, and the first bad value of each column.

    ``errors[name]`` is the :class:`DataError` the column's first bad row (in file
    order) raises; callers raise them in the order their checks run.
    """

    header: Header
    factors: dict[str, Factor]
    numbers: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    auto: dict[str, "AutoColumn"]
    lines: np.ndarray
    errors: dict[str, DataError]
    sources: list[str] | None = None  # several files (read_files): their paths
    source_ids: np.ndarray | None = None  # ... and each row's file
    block: np.ndarray | None = None  # (N, K) float32: the number columns, row-major
    block_columns: tuple[str, ...] = ()  # ... their names (``numbers[name]`` are its column views)

    @property
    def num_rows(self) -> int:
        return int(self.lines.shape[0])

    def raise_first(self, names: Sequence[str]) -> None:
        for name in names:
            if name in self.errors:
                raise self.errors[name]


# ---------------------------------------------------------------- header


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
            f"{', '.join(delimiter_name(c) for c in CANDIDATE_DELIMITERS)}; a multi-task file needs "
            "label and feature columns. Pass delimiter=... if it uses another one.",
            path=path,
            line=1,
        )
    return best


def _is_blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def read_header(path: str | os.PathLike, *, delimiter: str = "") -> Header:
    """Reads the header (detecting the delimiter when ``delimiter`` is empty) and checks it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError("file not found", path=path)
    if not os.path.isfile(path):
        raise DataError("is not a regular file", path=path)
    size = os.path.getsize(path)
    want = _HEAD_BYTES
    while True:
        with open(path, "rb") as f:
            raw = f.read(want)
        complete = len(raw) >= size or len(raw) < want
        if raw[:2] == b"\x1f\x8b":
            raise DataError("is gzip-compressed; decompress it first (e.g. gunzip)", path=path)
        cut = len(raw) if complete else max(raw.rfind(b"\n"), raw.rfind(b"\r")) + 1
        bad = None  # undecodable bytes: read the header from the lines before them
        try:
            text = raw[:cut].decode("utf-8")
        except UnicodeDecodeError as e:
            bad = e
            cut = max(raw.rfind(b"\n", 0, e.start), raw.rfind(b"\r", 0, e.start)) + 1
            text = raw[:cut].decode("utf-8")
            complete = True
        text = text.removeprefix("\ufeff")
        if not text.strip():
            if bad is not None:
                raise _utf8_error(path, raw, bad.start, bad.reason)
            if complete:
                raise DataError("file is empty", path=path)
            want *= 4
            continue
        all_lines = text.splitlines()
        first = next(i for i, line in enumerate(all_lines) if line.strip())
        if not complete and len(all_lines) < first + _SNIFF_LINES + 2:
            want *= 4
            continue
        head = all_lines[first : first + _SNIFF_LINES]
        if not delimiter:
            delimiter = detect_delimiter(path, head)
        elif len(delimiter) != 1:
            raise DataError(f"delimiter must be one character, got {delimiter!r}", path=path)
        elif _count_fields(head[0], delimiter) == 1:
            others = [d for d in CANDIDATE_DELIMITERS if d != delimiter and _count_fields(head[0], d) > 1]
            if others:
                raise DataError(
                    f"the header parses to a single column with delimiter {delimiter_name(delimiter)}, but it "
                    f"contains {delimiter_name(others[0])}: the file looks {delimiter_name(others[0])}-delimited. "
                    f"Pass delimiter={others[0]!r} (or '' to detect it).",
                    path=path,
                    line=first + 1,
                )
        lines_of_text = io.StringIO(text, newline="")
        reader = csv.reader(lines_of_text, delimiter=delimiter)
        record = None
        for rec in reader:
            if not _is_blank(rec):
                record = rec
                break
        if bad is not None and record is None:
            raise _utf8_error(path, raw, bad.start, bad.reason)  # before or within the header
        if record is None or (bad is None and not complete and lines_of_text.tell() >= len(text)):
            if complete:
                raise DataError("file is empty", path=path)
            want *= 4  # the header record runs past what was read
            continue
        line = reader.line_num
        header = [h.strip() for h in record]
        check_header_names(header, path, line)
        offset = _offset_after_lines(raw, line)
        return Header(path, header, delimiter, line, offset, size)


def check_header_names(header: list[str], path: str, line: int) -> None:
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


def _terminators(b: np.ndarray) -> np.ndarray:
    """Positions of line ends in a byte array: every ``\\n``, and every ``\\r`` not followed by ``\\n``."""
    n = b == 10
    r = b == 13
    if r.any():
        lone = r.copy()
        lone[:-1] &= ~n[1:]
        n = n | lone
    return np.flatnonzero(n)


def _offset_after_lines(raw: bytes, k: int) -> int:
    """Byte offset just after the ``k``-th line end of ``raw`` (its length if there are fewer)."""
    ends = _terminators(np.frombuffer(raw, np.uint8))
    if len(ends) >= k and k > 0:
        pos = int(ends[k - 1])
        # a \r at the very end of the read may be the first half of \r\n
        return pos + 1
    return len(raw)


def _utf8_error(path: str, raw: bytes, offset: int, reason: str, *, base_line: int = 1, names=None,
                delimiter=None) -> DataError:  # fmt: skip
    """A DataError for undecodable bytes at ``offset`` of ``raw`` (which starts on line ``base_line``)."""
    before = np.frombuffer(raw[:offset], np.uint8)
    ends = _terminators(before)
    line = base_line + len(ends)
    start = int(ends[-1]) + 1 if len(ends) else 0
    column = None
    if names is not None and delimiter is not None:
        prefix = raw[start:offset]
        if b'"' not in prefix:
            k = prefix.count(delimiter.encode())
            column = names[k] if k < len(names) else None
    return DataError(
        f"is not UTF-8 text: byte 0x{raw[offset]:02x} cannot be decoded ({reason})",
        path=path,
        line=line,
        column=column,
    )


# ---------------------------------------------------------------- value rules


def missing_mask(values: np.ndarray) -> np.ndarray:
    return np.isin(values, MISSING_VARIANTS)


def parses(v: str) -> bool:
    """Whether a stripped value is a number under this module's rules."""
    if "_" in v:
        return False
    try:
        float(v)
        return True
    except ValueError:
        return False


def _to_float(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x float64, ok)``: stripped non-missing strings as numbers where they parse."""
    ok = np.ones(len(values), bool)
    if len(values) == 0:
        return np.zeros(0), ok
    try:
        if (np.char.find(values, "_") >= 0).any():
            raise ValueError
        return values.astype(np.float64), ok
    except ValueError:
        x = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            if parses(str(v)):
                x[i] = float(v)
            else:
                ok[i] = False
        return x, ok


def infer_column_type(values: np.ndarray, *, max_categorical_distinct: int) -> tuple[str, str]:
    """``("numeric" | "categorical", reason)`` for a column of stripped strings (all rows)."""
    present = values[~missing_mask(values)]
    if present.size == 0:
        return "categorical", "all values missing"
    distinct = np.unique(present)
    x, ok = _to_float(distinct)
    if not ok.all():
        example = next((str(v) for v in present[:10000] if not parses(str(v))), "")
        return "categorical", f"non-numeric values (e.g. {example[:20]!r})"
    return _decide(x, max_categorical_distinct)


def _decide(x: np.ndarray, max_categorical_distinct: int) -> tuple[str, str]:
    """The numeric-or-categorical rule on the parsed distinct values ``x``."""
    if not np.all(np.isfinite(x)):
        return "categorical", "non-finite numbers"
    distinct = np.unique(x).size
    if not np.all(x == np.round(x)):
        return "numeric", f"non-integer numbers, {distinct} distinct"
    if distinct > max_categorical_distinct:
        return "numeric", f"{distinct} distinct integers > {max_categorical_distinct}"
    return "categorical", f"{distinct} distinct integers <= {max_categorical_distinct}"


@dataclasses.dataclass
class AutoColumn:
    """A column read as distinct stripped strings (``factor``) for the caller to type."""

    name: str
    factor: Factor  # stripped values (missing ones as they were), sorted and distinct
    path: str
    lines: np.ndarray

    def infer(self, *, max_categorical_distinct: int, others: Sequence["AutoColumn"] = ()) -> tuple[str, str]:
        """The type rule of :func:`infer_column_type` over this column and ``others`` (file order)."""
        parts = [self, *others]
        values = np.unique(np.concatenate([p.factor.values for p in parts]))
        present = values[~missing_mask(values)]
        if present.size == 0:
            return "categorical", "all values missing"
        x, ok = _to_float(present)
        if not ok.all():
            bad = set(present[~ok].tolist())
            example, seen = "", 0
            for p in parts:  # first bad value among the first 10,000 present rows
                is_present = ~missing_mask(p.factor.values)[p.factor.codes]
                rows = np.flatnonzero(is_present)[: 10000 - seen]
                seen += len(rows)
                hit = next((str(v) for v in p.factor.values[p.factor.codes[rows]] if v in bad), None)
                if hit is not None:
                    example = hit
                    break
                if seen >= 10000:
                    break
            return "categorical", f"non-numeric values (e.g. {example[:20]!r})"
        return _decide(x, max_categorical_distinct)

    def as_numbers(self) -> np.ndarray:
        """float32 values (NaN for missing); only for a column inferred numeric."""
        values = self.factor.values
        x = np.full(len(values), np.nan)
        present = ~missing_mask(values)
        x[present] = _to_float(values[present])[0]
        return x.astype(np.float32)[self.factor.codes]

    def as_factor(self, missing_token: str | None) -> Factor:
        return _replace_missing(self.factor, missing_token)


def _replace_missing(factor: Factor, token: str | None) -> Factor:
    if token is None or factor.ints is not None:  # integers are never missing values
        return factor
    values = factor.values
    missing = missing_mask(values)
    if not missing.any():
        return factor
    return merge_values(np.where(missing, token, values), factor.codes)


# ---------------------------------------------------------------- exact conversions (distinct values)


def number_column(factor: Factor, *, path: str, lines: np.ndarray, column: str, what: str = "numeric column"):
    """``(float32 values, error or None)`` of a column given as raw distinct strings."""
    values = factor.values
    present = ~missing_mask(values)
    x = np.full(len(values), np.nan)
    ok = np.ones(len(values), bool)
    x[present], ok[present] = _to_float(values[present])
    error = None
    if not ok.all():
        bad_rows = np.flatnonzero(~ok[factor.codes])
        i = int(bad_rows[0])
        value = str(values[factor.codes[i]])
        error = DataError(f"value {value!r} in {what} is not a number", path=path, line=int(lines[i]), column=column)
    return x.astype(np.float32)[factor.codes], error


def label_column(factor: Factor, *, kind: str, path: str, lines: np.ndarray, column: str):
    """``(float64 labels, error or None)`` of a label column given as raw distinct strings."""
    values, codes = factor.values, factor.codes
    missing = missing_mask(values)

    def first(mask_of_values):
        rows = np.flatnonzero(mask_of_values[codes])
        return int(rows[0]), len(rows)

    if missing[codes].any():
        i, count = first(missing)
        return None, DataError(
            f"label value is missing ({str(values[codes[i]])!r}; {count} such rows)",
            path=path, line=int(lines[i]), column=column,
        )  # fmt: skip
    x, ok = _to_float(values)
    if not ok[codes].all():
        i, _ = first(~ok)
        expect = "0 or 1 (binary task)" if kind == "binary" else "a number (regression task)"
        return None, DataError(
            f"label value {str(values[codes[i]])!r} is not {expect}", path=path, line=int(lines[i]), column=column
        )
    if kind == "binary":
        bad = (x != 0) & (x != 1)
        if bad[codes].any():
            i, count = first(bad)
            return None, DataError(
                f"label value {str(values[codes[i]])!r} is not 0 or 1 (binary task; {count} such rows). "
                "List the column in regression_columns if it is real-valued.",
                path=path, line=int(lines[i]), column=column,
            )  # fmt: skip
    else:
        bad = ~np.isfinite(x)
        if bad[codes].any():
            i, _ = first(bad)
            return None, DataError(
                f"label value {str(values[codes[i]])!r} is not finite", path=path, line=int(lines[i]), column=column
            )
    return x[codes], None


# ---------------------------------------------------------------- accumulating blocks


class _Numbers:
    def __init__(self, dtype, capacity: int | None = None):
        self.buffer = Buffer(dtype, capacity)

    def __len__(self) -> int:
        return self.buffer.size

    def add(self, array) -> None:
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        for chunk in chunks:
            self.buffer.append(chunk.to_numpy(zero_copy_only=False))

    def array(self) -> np.ndarray:
        out = self.buffer.array()
        self.buffer = None
        return out


class _NeedExactPath(Exception):
    """pyarrow cannot give the exact answer for this file: tokenise it with Python."""


_CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error to (\w+)")


# ---------------------------------------------------------------- the reader


def read_columns(header: Header, columns: Mapping[str, Column]) -> Table:
    """Reads the named columns of a file whose header is ``header``; see the module docstring.

    Structural problems (a record with the wrong number of fields, undecodable
    bytes, a file without data rows) raise at once, since they come before any
    value check; the first bad value of each column is returned in ``errors``.
    """
    unknown = [c for c in columns if c not in header.names]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the header of {header.path}")
    try:
        try:
            if len(header.names) == 1:  # pyarrow keeps whitespace-only lines as one-field records
                raise _NeedExactPath("single column")
            return _read_fast(header, columns)
        except _NeedExactPath:
            return _read_exact(header, columns)
    except OSError as e:
        raise DataError(f"cannot be read: {e}", path=header.path) from None
    finally:
        pa.default_memory_pool().release_unused()  # hand pyarrow's freed blocks back to the system


def check_structure(header: Header) -> int:
    """Checks every record's field count (and that there are data rows); returns the row count."""
    try:
        if len(header.names) == 1:
            raise _NeedExactPath("single column")
        rows = sum(b.num_rows for b in _open(header, {}, include=[]))
    except (_NeedExactPath, OSError, pa.ArrowException):
        rows = sum(len(chunk) for chunk, _ in _python_records(header, []))
    if rows == 0:
        raise DataError("has a header but no data rows", path=header.path)
    return rows


def _placeholder(i: int) -> str:
    return f"f{i}"


def _open(header: Header, types: Mapping[int, pa.DataType], include: Sequence[int]) -> Iterator[pa.RecordBatch]:
    if header.data_offset >= os.path.getsize(header.path):
        return iter(())
    stream = pa.OSFile(header.path, "rb")
    stream.seek(header.data_offset)
    names = [_placeholder(i) for i in range(len(header.names))]
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=names, block_size=BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(
                delimiter=header.delimiter, quote_char='"', double_quote=True, escape_char=False,
                newlines_in_values=True, ignore_empty_lines=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={_placeholder(i): t for i, t in types.items()},
                include_columns=[_placeholder(i) for i in include],
                null_values=MISSING_VARIANTS, strings_can_be_null=False, quoted_strings_can_be_null=True,
            ),
        )  # fmt: skip
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            return iter(())
        raise
    return iter(reader)


def read_files(headers: Sequence[Header], columns: Mapping[str, Column]) -> Table | None:
    """The columns of several files with the same columns, read into one table (row order:
    file by file), or ``None`` when any file is not plain (a structural or value problem, or
    rows not matched to lines one to one): the caller then reads file by file, which names
    the first problem exactly. One table saves building and then merging per-file columns.
    """
    if any(h.delimiter != headers[0].delimiter for h in headers):
        return None
    try:
        table = _read_fast(list(headers), columns, whole=True)
    except (_NeedExactPath, DataError, OSError):
        return None
    finally:
        pa.default_memory_pool().release_unused()  # hand pyarrow's freed blocks back to the system
    return None if table.errors else table


def _read_fast(headers, columns: Mapping[str, Column], *, whole: bool = False) -> Table:
    """pyarrow's reader over one file (``headers`` a :class:`Header`) or several (a list, read
    into one table; ``whole=True`` refuses any value problem with :class:`_NeedExactPath`)."""
    files = headers if isinstance(headers, list) else [headers]
    header = files[0]
    positions = [{name: i for i, name in enumerate(h.names)} for h in files]
    names = list(columns)
    as_strings = {c for c, spec in columns.items() if spec.kind in ("factor", "auto")}
    scans = [_scan(h.path, h.data_offset) for h in files]
    capacity = sum(s["n"] + s["lone_r"] + 1 for s in scans)  # no more records than lines

    def columns_of(c):
        """Column ``c`` of every file again, as text."""
        builder = FactorBuilder(capacity)
        for h, pos in zip(files, positions):
            for batch in _open(h, {pos[c]: pa.string()}, [pos[c]]):
                builder.add(batch.column(0))
        return builder

    attempts = 4
    for attempt in range(attempts + 1):
        # number columns go into one row-major float32 matrix (rows are gathered whole later)
        in_block = [c for c in names if c not in as_strings and columns[c].kind == "number"]
        block = np.empty((capacity, len(in_block)), np.float32) if len(in_block) > 1 else None
        acc = {c: FactorBuilder(capacity, check="total") if c in as_strings
               else _Numbers(np.float32 if columns[c].kind == "number" else np.float64, capacity)
               for c in names if block is None or c not in in_block}  # fmt: skip
        block_at = [0]
        block_slots = [(j, in_block.index(c)) for j, c in enumerate(names) if block is not None and c in in_block]
        rows_read = [0]

        def convert(batch):
            for j, c in enumerate(names):
                if c in acc:
                    acc[c].add(batch.column(j))
            n = batch.num_rows
            if block is not None:
                start = block_at[0]
                if start + n > len(block):
                    raise _NeedExactPath("more records than lines")
                for j, k in block_slots:
                    block[start : start + n, k] = batch.column(j).to_numpy(zero_copy_only=False)
                block_at[0] = start + n
            rows_read[0] += n

        rows_per_file = []

        try:
            with Pipeline(convert) as pipeline:  # convert block i while pyarrow parses block i + 1
                for h, pos in zip(files, positions):
                    types = {pos[c]: (pa.string() if c in as_strings else pa.float64()) for c in names}
                    rows = 0
                    for batch in _open(h, types, [pos[c] for c in names]):
                        pipeline.submit(batch)
                        rows += batch.num_rows
                    rows_per_file.append(rows)
            break
        except pa.ArrowInvalid as e:
            match = _CONVERSION.search(str(e))
            if attempt < attempts and match and match.group(2) == "double" and not whole:
                # a value in this column is not a plain number: read it as text, convert exactly
                # (after a few such columns, all of them)
                bad = files[0].names[int(match.group(1))] if len(files) == 1 else None
                if bad in columns and bad not in as_strings and attempt < attempts - 1:
                    as_strings.add(bad)
                else:
                    as_strings |= {c for c, spec in columns.items() if spec.kind in ("number", "label")}
                continue
            raise _NeedExactPath(str(e)) from None
        except (OSError, pa.ArrowException) as e:
            raise _NeedExactPath(str(e)) from None
    total_rows = rows_read[0]
    parts = []
    for h, rows, scan in zip(files, rows_per_file, scans):
        if rows == 0:
            raise DataError("has a header but no data rows", path=h.path)
        parts.append(_line_numbers(h, rows, scan))
    lines = parts[0] if len(parts) == 1 else np.concatenate(parts)
    table = Table(header, {}, {}, {}, {}, lines, {})
    if len(files) > 1:
        table.sources = [h.path for h in files]
        table.source_ids = np.repeat(np.arange(len(files), dtype=np.int16), rows_per_file)
    if block is not None:
        table.block, table.block_columns = block[:total_rows], tuple(in_block)
        for k, c in enumerate(in_block):
            table.numbers[c] = table.block[:, k]
    def make_factor(c):
        try:
            return _factor_of(table, c, acc[c])  # noqa: B023 (run right away)
        except NotPlainIntegers:
            return None

    string_columns = [c for c in names if c in as_strings]
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="mtl-factor") as pool:  # numpy releases the GIL
        factors = dict(zip(string_columns, pool.map(make_factor, string_columns)))
    for c in names:
        if c not in acc:  # in the number block
            continue
        spec, a = columns[c], acc.pop(c)
        if c in as_strings:
            factor = factors.pop(c)
            if factor is None:  # an id like "007" somewhere: read the column again, as text
                factor = _factor_of(table, c, columns_of(c))
            _finish_strings(table, c, spec, factor)
        elif spec.kind == "number":
            table.numbers[c] = a.array()
        else:
            x = a.array()
            bad = np.isnan(x) | ((x != 0) & (x != 1) if spec.task == "binary" else ~np.isfinite(x))
            if bad.any():  # re-read the column as strings for the exact message
                if whole:
                    raise _NeedExactPath(f"label problem in column {c!r}")
                _finish_strings(table, c, spec, _factor_of(table, c, columns_of(c)))
            else:
                table.labels[c] = x
    return table


def _factor_of(table: Table, name: str, strings) -> Factor:
    return factor_of(strings, path=table.header.path, lines=table.lines, column=name)


def factor_of(strings, *, path: str, lines: np.ndarray, column: str, strip: bool = True) -> Factor:
    """``strings.factor()``, or a :class:`DataError` naming the line of a value too long to tabulate."""
    try:
        return strings.factor(strip=strip)
    except TooWide as e:
        raise e.error(path, lines, column) from None


def _finish_strings(table: Table, name: str, spec: Column, factor: Factor) -> None:
    path, lines = table.header.path, table.lines
    if spec.kind == "factor":
        table.factors[name] = _replace_missing(factor, spec.missing_token)
    elif spec.kind == "auto":
        table.auto[name] = AutoColumn(name, factor, path, lines)
    elif spec.kind == "number":
        table.numbers[name], error = number_column(factor, path=path, lines=lines, column=name)
        if error is not None:
            table.errors[name] = error
    else:
        x, error = label_column(factor, kind=spec.task, path=path, lines=lines, column=name)
        if error is not None:
            table.errors[name] = error
            x = np.zeros(len(factor), np.float64)
        table.labels[name] = x


# ---------------------------------------------------------------- line numbers


def _scan(path: str, offset: int) -> dict:
    """Line ends, lone carriage returns and quotes in ``path`` from ``offset`` on."""
    count_n = count_r = count_rn = 0
    quote = False
    last = b""
    prev_r = False
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(_SCAN_BYTES)
            if not chunk:
                break
            count_n += chunk.count(b"\n")
            if prev_r or b"\r" in chunk:
                r = chunk.count(b"\r")
                count_r += r
                count_rn += chunk.count(b"\r\n") + (1 if prev_r and chunk[:1] == b"\n" else 0)
            quote = quote or b'"' in chunk
            prev_r = chunk[-1:] == b"\r"
            last = chunk[-1:]
    return {"n": count_n, "lone_r": count_r - count_rn, "quote": quote, "last": last}


def _line_numbers(header: Header, rows: int, s: dict) -> np.ndarray:
    """Each row's 1-based line, when pyarrow's ``rows`` records can be matched to lines exactly
    (``s``: what :func:`_scan` found after the header)."""
    first = header.line + 1
    if rows == 0:
        return np.zeros(0, np.int64)
    if s["lone_r"] == 0:
        lines_in_data = s["n"] + (0 if s["last"] in (b"\n", b"") else 1)
        if lines_in_data == rows:  # one record per line: the common case
            return np.arange(first, first + rows, dtype=np.int64)
    if not s["quote"]:
        lines = _nonempty_lines(header.path, header.data_offset, first)
    else:
        lines = np.fromiter((line for chunk, chunk_lines in _python_records(header, []) for line in chunk_lines),
                            np.int64)  # fmt: skip
    if len(lines) != rows:
        raise _NeedExactPath(f"{rows} records but {len(lines)} non-blank lines")
    return lines


def _nonempty_lines(path: str, offset: int, first_line: int) -> np.ndarray:
    """1-based numbers of the non-empty lines from ``offset`` on (the first is ``first_line``)."""
    out = []
    line = first_line  # number of the line being read
    pending = 0  # bytes of the current line seen in earlier chunks
    carry = b""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(_SCAN_BYTES)
            eof = not chunk
            data = carry + chunk
            if not eof and data.endswith(b"\r"):  # may be the first half of \r\n
                data, carry = data[:-1], b"\r"
            else:
                carry = b""
            if not data:
                if eof:
                    break
                continue
            b = np.frombuffer(data, np.uint8)
            ends = _terminators(b)
            starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, np.int64)
            lengths = ends - starts
            crlf = (b[ends] == 10) & (ends > 0)
            crlf[crlf] = b[ends[crlf] - 1] == 13
            lengths = lengths - crlf
            if len(lengths):
                lengths[0] += pending
            numbers = line + np.arange(len(ends))
            out.append(numbers[lengths > 0])
            line += len(ends)
            tail = len(b) - (int(ends[-1]) + 1 if len(ends) else 0)
            pending = (pending if not len(ends) else 0) + tail
            if eof:
                break
    if pending > 0:
        out.append(np.array([line]))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


# ---------------------------------------------------------------- the exact path (Python's csv module)


def _python_records(header: Header, wanted: Sequence[int]):
    """``(columns, lines)`` chunks of the data records, tokenised by Python's :mod:`csv`.

    ``columns`` holds the ``wanted`` fields of up to ``_SLOW_CHUNK_ROWS`` records.
    Raises the first structural error (a record with another number of fields than
    the header, undecodable bytes) with its line.
    """
    width = len(header.names)
    path = header.path
    with open(path, "rb") as raw:
        raw.seek(header.data_offset)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
        reader = csv.reader(text, delimiter=header.delimiter)
        records: list[list[str]] = []
        lines: list[int] = []
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError:
                raise _locate_utf8_error(header) from None
            except csv.Error as e:
                raise DataError(f"cannot be read as delimited text: {e}", path=path,
                                line=header.line + reader.line_num + 1) from None  # fmt: skip
            if _is_blank(record):
                continue
            line = header.line + reader.line_num
            if len(record) != width:
                raise DataError(
                    f"has {len(record)} fields, the header has {width} (delimiter {delimiter_name(header.delimiter)})",
                    path=path,
                    line=line,
                )
            records.append([record[i] for i in wanted])
            lines.append(line)
            if len(records) >= _SLOW_CHUNK_ROWS:
                yield records, lines
                records, lines = [], []
        if records:
            yield records, lines


def _locate_utf8_error(header: Header) -> DataError:
    return locate_utf8_error(header.path, header.data_offset, header.line + 1, header.names, header.delimiter)


def locate_utf8_error(path: str, offset: int = 0, line: int = 1, names=None, delimiter=None) -> DataError:
    """A :class:`DataError` for the first undecodable byte of ``path`` after ``offset`` (which
    starts line ``line``), naming its line, and its column when ``names`` are given and the line
    is unquoted up to there."""
    carry = b""
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read(_SCAN_BYTES)
            final = not chunk
            data = carry + chunk
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                if final or e.reason != "unexpected end of data":
                    return _utf8_error(path, data, e.start, e.reason, base_line=line, names=names,
                                       delimiter=delimiter)  # fmt: skip
            if final:
                break
            ends = _terminators(np.frombuffer(data, np.uint8))
            if data.endswith(b"\r"):
                ends = ends[ends < len(data) - 1]  # may be the first half of \r\n
            cut = int(ends[-1]) + 1 if len(ends) else 0
            line += len(ends)
            carry = data[cut:]
    return DataError("is not UTF-8 text", path=path)


def _read_exact(header: Header, columns: Mapping[str, Column]) -> Table:
    position = {name: i for i, name in enumerate(header.names)}
    names = list(columns)
    acc = {c: FactorBuilder() for c in names}
    line_chunks = []  # the exact path: no bound on rows known, buffers grow
    for records, lines in _python_records(header, [position[c] for c in names]):
        for j, c in enumerate(names):
            acc[c].add(pa.array([r[j] for r in records], pa.string()))
        line_chunks.append(np.asarray(lines, np.int64))
        del records
    lines = np.concatenate(line_chunks) if line_chunks else np.zeros(0, np.int64)
    if len(lines) == 0:
        raise DataError("has a header but no data rows", path=header.path)
    table = Table(header, {}, {}, {}, {}, lines, {})
    for c in names:
        _finish_strings(table, c, columns[c], _factor_of(table, c, acc.pop(c)))
    return table


__all__ = [
    "AutoColumn",
    "Column",
    "MAX_DISTINCT_BYTES",
    "Header",
    "MISSING_VALUES",
    "MISSING_VARIANTS",
    "Table",
    "check_structure",
    "delimiter_name",
    "factor_of",
    "detect_delimiter",
    "infer_column_type",
    "missing_mask",
    "read_columns",
    "read_files",
    "read_header",
]
