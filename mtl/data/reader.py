"""Tables with a header (delimited text, Parquet, Arrow IPC / Feather) read into typed columns.

pyarrow hands over record batches (its streaming CSV reader; a Parquet or Arrow file's columns
one whole column at a time) and :func:`read_columns` turns them into compact columns: text as
codes into sorted distinct values, numbers into one row-major float32 matrix. Column kinds
(:class:`Column`): ``factor``, ``number``, ``label`` and ``auto`` (typed by the caller,
:meth:`AutoColumn.infer`). Errors are :class:`~mtl.data.errors.DataError` s naming file, line and
column, located after pyarrow reports them. The rules: ``docs/data.md``, *Reading files*.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import mmap
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.ipc as ipc

from mtl.data.errors import DataError
from mtl.data.frame import Factor, Frame, TooWide, sorted_factor

CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
MISSING_VALUES = ("", "na", "n/a", "nan", "null", "none", "?")
MISSING_VARIANTS = sorted({v for m in MISSING_VALUES for v in (m, m.upper(), m.capitalize(), m.title())})
MAGIC = ((b"PAR1", "parquet"), (b"ARROW1", "arrow"), (b"FEA1", "arrow"))
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
FORMAT_NAMES = {"parquet": "Parquet", "arrow": "Arrow IPC / Feather"}
#: pyarrow block size (grown for a record longer than a block).
BLOCK_SIZE = 1 << 20
_HEAD_BYTES = 1 << 20
_SCAN_BYTES = 16 << 20
_SNIFF_LINES = 20
_REFUSED = re.compile(r"Expected \d+ columns, got (\d+): (.*)", re.S)
_CONVERSION = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+)")
_TEXT = pa.dictionary(pa.int32(), pa.string())


def delimiter_name(d: str) -> str:
    return {"\t": "\\t (tab)", ",": "',' (comma)", ";": "';' (semicolon)", "|": "'|' (pipe)"}.get(d, repr(d))


@dataclasses.dataclass(frozen=True)
class Column:
    """What to make of one column: ``kind`` is ``factor``, ``number`` (float32), ``label`` (float64, or
    float32 when all are 0 or 1; its values checked by :func:`mtl.data.preprocess.build_multitask_data`) or ``auto``.

    ``missing_token`` (factor): missing
    values become this one value (``None``: kept as they are). ``integers`` (factor): the values
    are integer ids, parsed as numbers (faster, and a quarter of the memory of text) and coded by
    their decimal text, so ``007`` is ``7``; a column with another or a missing value in a
    delimited file is read as text instead. ``exact=False`` (auto): a typed file's column of
    non-integer numbers is kept as float32, what a numeric feature becomes (its type is then known).
    """

    kind: str
    missing_token: str | None = None
    integers: bool = False
    exact: bool = True

    def __post_init__(self):
        if self.kind not in ("factor", "number", "label", "auto"):
            raise ValueError(f"unknown column kind {self.kind!r}")


@dataclasses.dataclass
class Header:
    """A file's column names and where its data starts (``format``: ``delimited``, ``parquet``
    or ``arrow``; a typed file has ``types``, its arrow types, and no header line)."""

    path: str
    names: list[str]
    delimiter: str
    line: int  # 1-based line on which the header record ends
    data_offset: int  # byte offset of the first data line
    size: int  # file size when the header was read
    format: str = "delimited"
    types: dict = dataclasses.field(default_factory=dict)
    num_rows: int = 0

    def is_number(self, name: str) -> bool:
        t = self.types.get(name)
        return t is not None and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                                  or pa.types.is_decimal(t))  # fmt: skip


# ---------------------------------------------------------------- values


def missing_mask(values: np.ndarray) -> np.ndarray:
    return np.isin(values, MISSING_VARIANTS)


def _to_float(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x float64, ok)``: stripped non-missing strings as numbers where they parse."""
    ok = np.char.find(values, "_") < 0
    try:
        if ok.all():
            return values.astype(np.float64), ok
    except ValueError:
        pass
    x = np.full(len(values), np.nan)
    for i in np.flatnonzero(ok):
        try:
            x[i] = float(values[i])
        except ValueError:
            ok[i] = False
    return x, ok


def _decide(x: np.ndarray, max_categorical_distinct: int) -> tuple[str, str]:
    """The numeric-or-categorical rule on the distinct present numbers ``x``."""
    if x.size == 0:
        return "categorical", "all values missing"
    if not np.all(np.isfinite(x)):
        return "categorical", "non-finite numbers"
    if not np.all(x == np.round(x)):
        return "numeric", "non-integer numbers"
    distinct = np.unique(x).size
    if distinct > max_categorical_distinct:
        return "numeric", f"{distinct} distinct integers > {max_categorical_distinct}"
    return "categorical", f"{distinct} distinct integers <= {max_categorical_distinct}"


def infer_column_type(values: np.ndarray, *, max_categorical_distinct: int) -> tuple[str, str]:
    """``("numeric" | "categorical", reason)`` for a column of stripped strings (all rows)."""
    factor = Factor(np.zeros(0, np.int32), np.unique(np.asarray(values, str)))
    return AutoColumn("", factor, None).infer(max_categorical_distinct=max_categorical_distinct)


def _replace_missing(factor: Factor, token: str | None) -> Factor:
    if token is None:
        return factor
    missing = missing_mask(factor.values)
    if not missing.any():
        return factor
    values, merge = np.unique(np.where(missing, token, factor.values), return_inverse=True)
    return Factor(merge.astype(np.int32).reshape(-1)[factor.codes], values)


def _number_column(factor: Factor, what: str = "value {!r} in numeric column") -> tuple[np.ndarray, tuple | None]:
    """``(float64 values, NaN for missing; (row, message) of the first value that is not a number or
    None)`` of a column read as text; ``what`` names the value in the message."""
    present = ~missing_mask(factor.values)
    x, ok = np.full(factor.num_values, np.nan), np.ones(factor.num_values, bool)
    x[present], ok[present] = _to_float(factor.values[present])
    if ok.all():
        return x[factor.codes], None
    row = int(np.flatnonzero(~ok[factor.codes])[0])
    return x[factor.codes], (row, what.format(str(factor.values[factor.codes[row]])) + " is not a number")


class AutoColumn:
    """A column for the caller to type: distinct stripped strings (``factor``), or, for a
    typed file's number column, ``numbers`` (float64, NaN for missing; float32 for non-integer
    numbers of a ``Column.exact=False`` column); ``frame`` locates its rows."""

    def __init__(self, name: str, factor: Factor | None, frame: Frame | None, numbers: np.ndarray | None = None):
        self.name, self._factor, self.frame, self.numbers = name, factor, frame, numbers

    def error(self, row: int, message: str) -> DataError:
        path, line = self.frame.locate(row)
        return DataError(message, path=path, line=line, column=self.name)

    @property
    def factor(self) -> Factor:
        """The values as text (numbers as pyarrow writes them in a CSV; missing: ``""``)."""
        if self._factor is None:
            missing = np.isnan(self.numbers)
            uniq, codes = np.unique(self.numbers[~missing], return_inverse=True)
            text = pc.cast(pa.array(uniq), pa.string()).to_numpy(zero_copy_only=False)
            all_codes = np.full(len(self.numbers), len(uniq), np.int32)
            all_codes[~missing] = codes.reshape(-1)
            self._factor = sorted_factor(pa.array(np.append(text, "").astype(object), pa.string()), all_codes)
        return self._factor

    def infer(self, *, max_categorical_distinct: int) -> tuple[str, str]:
        """``("numeric" | "categorical", reason)``: numeric when every present value is a number and
        they are not all integers or there are more than ``max_categorical_distinct`` distinct integers."""
        if self.numbers is not None and self.numbers.dtype == np.float32:
            return "numeric", "non-integer numbers"  # kept as float32 (Column.exact=False) for that reason
        if self.numbers is not None:
            return _decide(self.numbers[~np.isnan(self.numbers)], max_categorical_distinct)
        present = self.factor.values[~missing_mask(self.factor.values)]
        x, ok = _to_float(present)
        if not ok.all():
            return "categorical", f"non-numeric values (e.g. {str(present[~ok][0])[:20]!r})"
        return _decide(x, max_categorical_distinct)

    def as_numbers(self) -> np.ndarray:
        """The float32 values with NaN for missing; the first value that is not a number raises."""
        if self.numbers is not None:
            return self.numbers.astype(np.float32, copy=False)
        x, bad = _number_column(self.factor)
        if bad is not None:
            raise self.error(*bad)
        return x.astype(np.float32)

    def as_factor(self, missing_token: str | None) -> Factor:
        return _replace_missing(self.factor, missing_token)


@dataclasses.dataclass
class Table(Frame):
    """A :class:`~mtl.data.frame.Frame` of the columns asked for (``categorical``: the factor
    columns, ``numeric``: the number columns) plus ``labels`` and ``auto`` columns."""

    labels: dict = dataclasses.field(default_factory=dict)
    auto: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------- the header


def _fields(line: str, d: str) -> int:
    return len(next(csv.reader([line.rstrip("\r\n")], delimiter=d), []))


def detect_delimiter(path: str, head: list[str]) -> str:
    """The candidate that splits the header and the first lines into the same number (> 1) of
    fields (the most fields wins), else the one that splits the header most."""
    counts = {d: [_fields(line, d) for line in head] for d in CANDIDATE_DELIMITERS}
    splitting = [d for d in CANDIDATE_DELIMITERS if counts[d][0] > 1]
    consistent = [d for d in splitting if len(set(counts[d])) == 1]
    if not splitting:
        raise DataError(
            f"cannot detect the delimiter: the header {head[0].strip()[:80]!r} does not split on any of "
            f"{', '.join(map(delimiter_name, CANDIDATE_DELIMITERS))}; a multi-task file needs label and feature "
            "columns. Pass delimiter=... if it uses another one.", path=path, line=1)  # fmt: skip
    return max(consistent or splitting, key=lambda d: counts[d][0])


def file_format(path: str | os.PathLike) -> str:
    """``"parquet"``, ``"arrow"`` or ``"delimited"``: by the magic bytes, else by the extension."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            head = f.read(6)
        for magic, name in MAGIC:
            if head.startswith(magic):
                return name
    return EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower(), "delimited")


def _check_names(names: list[str], path: str, line: int) -> None:
    empty = [i + 1 for i, h in enumerate(names) if not h]
    if empty:
        raise DataError(f"header has empty column names at positions {empty}", path=path, line=line)
    repeated = sorted({h for h in names if names.count(h) > 1})
    if repeated:
        raise DataError(f"header repeats column names {repeated}", path=path, line=line)


def read_header(path: str | os.PathLike, *, delimiter: str = "") -> Header:
    """Reads and checks the header (detecting the delimiter of a delimited file when
    ``delimiter`` is empty) or a typed file's schema."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("is not a regular file" if os.path.exists(path) else "file not found", path=path)
    fmt = file_format(path)
    if fmt != "delimited":
        return _typed_header(path, fmt)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(_HEAD_BYTES)
    if raw[:2] == b"\x1f\x8b":
        raise DataError("is gzip-compressed; decompress it first (e.g. gunzip)", path=path)
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text, bad = raw[bom:].decode("utf-8"), None
    except UnicodeDecodeError as e:
        text, bad = raw[bom : bom + e.start].decode("utf-8"), e
    lines = list(io.StringIO(text, newline=""))  # split at \n, \r\n and \r, endings kept
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        if bad is not None or len(raw) < size:
            raise utf8_error(path, 0, 1)
        raise DataError("file is empty", path=path)
    head = [line for line in lines[first : first + _SNIFF_LINES] if line.strip()]
    if not delimiter:
        delimiter = detect_delimiter(path, head)
    elif len(delimiter) != 1:
        raise DataError(f"delimiter must be one character, got {delimiter!r}", path=path)
    if _fields(head[0], delimiter) == 1:
        others = [d for d in CANDIDATE_DELIMITERS if d != delimiter and _fields(head[0], d) > 1]
        hint = (f", but it contains {delimiter_name(others[0])}: the file looks {delimiter_name(others[0])}-delimited. "
                f"Pass delimiter={others[0]!r} (or '' to detect it)." if others
                else "; a multi-task file needs label and feature columns.")  # fmt: skip
        raise DataError(f"the header parses to a single column with delimiter {delimiter_name(delimiter)}{hint}",
                        path=path, line=first + 1)  # fmt: skip
    reader = csv.reader(lines[first:], delimiter=delimiter)
    record = next(reader)
    end = first + reader.line_num  # lines up to the end of the header record
    if end == len(lines) and not lines[-1].endswith(("\n", "\r")) and (bad is not None or len(raw) < size):
        if bad is not None:
            raise utf8_error(path, 0, 1)
        raise DataError(f"the header record is longer than {_HEAD_BYTES:,} bytes", path=path, line=first + 1)
    names = [h.strip() for h in record]
    _check_names(names, path, end)
    return Header(path, names, delimiter, end, bom + len("".join(lines[:end]).encode()), size)


def _typed_header(path: str, fmt: str) -> Header:
    size = os.path.getsize(path)
    if size == 0:
        raise DataError("file is empty", path=path)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq  # here, not for every load: about 6 MiB of resident memory
            meta = pq.read_metadata(path)
            schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
        else:
            table = _arrow_table(path)
            schema, rows = table.schema, table.num_rows
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot be read as {FORMAT_NAMES[fmt]}: {e}", path=path) from None
    names = [str(n) for n in schema.names]
    _check_names(names, path, 1)
    for field in schema:
        if pa.types.is_nested(field.type):
            raise DataError(f"has type {field.type}, which is neither numbers nor text", path=path, column=field.name)
    if rows == 0:
        raise DataError("has a header but no data rows", path=path)
    return Header(path, names, "", 0, 0, size, fmt, {f.name: f.type for f in schema}, rows)


def _arrow_table(path: str) -> pa.Table:
    """An Arrow IPC file (Feather v2), a Feather v1 file or an IPC stream, memory-mapped."""
    try:
        return feather.read_table(path, memory_map=True)
    except pa.ArrowInvalid:
        return ipc.open_stream(pa.memory_map(path)).read_all()


def _typed_batches(h: Header, names: list[str]):
    """A batch of each column of a Parquet or Arrow file, whole: one decoded column in memory at a time."""
    try:
        import pyarrow.parquet as pq
        source = pq.ParquetFile(h.path) if h.format == "parquet" else _arrow_table(h.path)
        for c in names:
            column = (source.read(columns=[c]) if h.format == "parquet" else source.select([c])).column(0)
            yield pa.RecordBatch.from_arrays([column.combine_chunks()], [c])
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot be read as {FORMAT_NAMES[h.format]}: {e}", path=h.path) from None


def _as_type(array: pa.Array, text: bool) -> pa.Array:
    """A batch's column as the reader wants it: float64, or text as a dictionary array."""
    if not text:
        return array if array.type == pa.float64() else pc.cast(array, pa.float64())
    if array.type == _TEXT and not array.null_count:
        return array
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    encoded = pc.dictionary_encode(array, null_encoding="encode")
    values = encoded.dictionary if encoded.dictionary.type == pa.string() else pc.cast(encoded.dictionary, pa.string())
    return pa.DictionaryArray.from_arrays(encoded.indices, values.fill_null(""))


# ---------------------------------------------------------------- locating problems in the bytes


def _chunks(path: str, offset: int, stop: int | None = None):
    """The file's bytes from ``offset`` to ``stop`` (default: its end), in chunks that never end between
    ``\\r`` and ``\\n``."""
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(_SCAN_BYTES if stop is None else max(0, min(_SCAN_BYTES, stop - f.tell()))):
            yield chunk + f.read(1) if chunk.endswith(b"\r") else chunk


def _ends(data: bytes) -> int:
    """The number of line ends in ``data`` (``\\r\\n`` is one)."""
    return data.count(b"\n") + (data.count(b"\r") - data.count(b"\r\n") if b"\r" in data else 0)


def _lines(h: Header, rows: int) -> np.ndarray:
    """Each data row's line when the file's lines after the header, up to the last one that is not blank,
    are as many as its rows (one count of line ends); else (quoted line breaks, blank lines among the
    records) minus its 1-based record number: the line is not known cheaply (docs/data.md, *Errors*)."""
    count = lines = 0
    for chunk in _chunks(h.path, h.data_offset):
        tail = chunk[-4096:]  # the white space at a chunk's end, found without copying the chunk
        kept = len(tail.rstrip())
        end = len(chunk) - len(tail) + kept if kept else len(chunk.rstrip())
        ends = _ends(chunk)
        if end:  # the line of the last byte that is not white space
            lines = count + ends - _ends(chunk[end:]) + 1
        count += ends
    if lines == rows:
        return np.arange(h.line + 1, h.line + 1 + rows, dtype=np.int64)
    return -np.arange(1, rows + 1, dtype=np.int64)


def _line_of(h: Header, text: str, fields: int, *, whole: bool) -> int | None:
    """The line on which the first record after the header that is ``text`` (``whole``) starts, or, when
    only its start is known, the first line that starts with ``text`` and splits into ``fields`` fields
    (else the first that starts with it): pyarrow quotes a record it refuses, not its place. A search of
    the bytes, not a second parse."""
    pattern = rb"[\r\n]" + re.escape(text.encode()) + (rb"(?=[\r\n]|\Z)" if whole else b"")
    found = None
    with open(h.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for match in re.compile(pattern).finditer(m, h.data_offset - 1):
            found = found or match
            end = min([i for i in (m.find(b"\n", match.end()), m.find(b"\r", match.end())) if i >= 0] or [len(m)])
            if whole or _fields(m[match.start() + 1 : end].decode("utf-8", "replace"), h.delimiter) == fields:
                found = match
                break
    if found is None:
        return None
    return h.line + 1 + sum(map(_ends, _chunks(h.path, h.data_offset, found.start() + 1)))


def utf8_error(path: str, offset: int, line: int, h: Header | None = None) -> DataError:
    """The first undecodable byte of ``path`` after ``offset`` (which starts line ``line``), its
    line and, when the line is unquoted up to it, its column."""
    carry, fields, quoted = b"", 0, False  # the current line so far: its delimiters, a quote in it
    delimiter = h.delimiter.encode() if h is not None else b","

    def read(text: bytes) -> None:  # moves the line, the field and the quote past ``text``
        nonlocal line, fields, quoted
        start = max(text.rfind(b"\n"), text.rfind(b"\r")) + 1  # where its last line starts
        if start:
            fields, quoted = 0, False
        line += _ends(text)
        fields += text[start:].count(delimiter)
        quoted = quoted or b'"' in text[start:]

    for chunk in _chunks(path, offset):
        data = carry + chunk
        try:
            data.decode("utf-8")
            bad, cut = None, len(data)
        except UnicodeDecodeError as e:  # a character cut at the chunk's end is decoded with the next
            bad = e if e.reason != "unexpected end of data" or e.end < len(data) else None
            cut = e.start
        read(data[: bad.start if bad is not None else cut])
        if bad is not None:
            column = h.names[fields] if h is not None and not quoted and fields < len(h.names) else None
            return DataError(f"is not UTF-8 text: byte 0x{data[bad.start]:02x} cannot be decoded ({bad.reason})",
                             path=path, line=line, column=column)  # fmt: skip
        carry = data[cut:]
    if carry:
        return DataError("is not UTF-8 text (cut inside a character at its end)", path=path, line=line)
    return DataError("is UTF-8 text", path=path)


# ---------------------------------------------------------------- the reader


def _open(h: Header, types: Mapping[str, pa.DataType], *, block_size: int):
    """pyarrow's streaming reader over the data records: batches of the columns in ``types``."""
    if h.data_offset >= h.size:
        return iter(())

    def invalid(row):
        try:
            return "skip" if not row.text.strip() else "error"  # skips a whitespace-only line
        except UnicodeDecodeError:
            return "error"

    stream = pa.OSFile(h.path, "rb")
    stream.seek(h.data_offset)
    try:
        return iter(pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=h.names, block_size=block_size),
            parse_options=pacsv.ParseOptions(delimiter=h.delimiter, newlines_in_values=True,
                                             invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types=dict(types), include_columns=list(types),
                                                 null_values=MISSING_VARIANTS, strings_can_be_null=False),
        ))  # fmt: skip
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            return iter(())
        raise


def _located(h: Header, error: pa.ArrowInvalid) -> DataError:
    """A DataError naming the place of a problem pyarrow reported without one: the first undecodable
    byte, else the record whose number of fields is not the header's (pyarrow quotes its first 100
    characters)."""
    utf8 = utf8_error(h.path, h.data_offset, h.line + 1, h)
    if utf8.line is not None:
        return utf8
    refused = _REFUSED.search(str(error))
    if refused is None:
        return DataError(f"cannot be read as delimited text: {error}", path=h.path)
    text = refused.group(2).removesuffix(" ...")  # the first 100 characters of a longer record
    line = _line_of(h, text, int(refused.group(1)), whole=text == refused.group(2))
    return DataError(f"has {refused.group(1)} fields, the header has {len(h.names)} (delimiter "
                     f"{delimiter_name(h.delimiter)})", path=h.path, line=line)  # fmt: skip


class _AsText(Exception):
    """A column to read again as text."""


class _Failed(Exception):
    def __init__(self, header: Header, error: pa.ArrowInvalid):
        self.header, self.error = header, error


def read_columns(header: Header | Sequence[Header], columns: Mapping[str, Column]) -> Table:
    """Reads the named columns of one file (or of several with the same columns, into one table,
    rows file by file); see the module docstring.

    Structural problems (a record with the wrong number of fields, undecodable bytes, a file
    without data rows) raise first, then the first bad value of the first number or label
    column (in the order of ``columns``) that has one.
    """
    files = [header] if isinstance(header, Header) else list(header)
    for h in files:
        unknown = [c for c in columns if c not in h.names]
        if unknown:
            raise ValueError(f"columns {unknown} are not in the header of {h.path}")
    # text: factors, delimited autos, and numbers that a typed file holds as text
    typed = any(h.types for h in files)
    text = {c for c, s in columns.items() if (s.kind == "factor" and (typed or not s.integers)) or (
        s.kind == "auto" and not all(h.is_number(c) for h in files)) or any(
        h.types and not h.is_number(c) for h in files)}  # fmt: skip
    block_size = BLOCK_SIZE
    try:
        while True:
            try:
                return _read(files, columns, text, block_size)
            except _AsText as e:
                text.add(e.args[0])
            except _Failed as failed:
                message, h = str(failed.error), failed.header
                match = _CONVERSION.search(message)
                if match and match.group(2) == "int64":  # integer ids with another value: read them as text
                    text.add(h.names[int(match.group(1))])
                elif match and match.group(2) == "double":  # not a plain number: read the column as text
                    name = h.names[int(match.group(1))]
                    numeric = {c for c, s in columns.items() if s.kind in ("number", "label")} - text
                    text |= {name} if name in numeric else numeric
                elif "straddl" in message and block_size < h.size:  # a record longer than a block
                    block_size *= 8
                elif h.types:
                    raise DataError(f"cannot be read as {FORMAT_NAMES[h.format]}: {message}", path=h.path) from None
                else:
                    raise _located(h, failed.error) from None
    except OSError as e:
        raise DataError(f"cannot be read: {e}", path=files[0].path) from None
    finally:
        pa.default_memory_pool().release_unused()  # hand pyarrow's freed blocks back to the system


def read_dataset_files(paths: Sequence[str | os.PathLike], columns: Mapping[str, Column], *, what: str) -> Table:
    """A dataset's comma-separated files with known ``columns`` (``what``: the format, for the error
    naming a file that lacks some) read into one table; the first bad number or label raises."""
    headers = [read_header(p, delimiter=",") for p in paths]
    for h in headers:
        missing = [c for c in columns if c not in h.names]
        if missing:
            raise DataError(f"not {what} file: columns {missing} are missing; header: {', '.join(h.names)}",
                            path=h.path, line=h.line)  # fmt: skip
    return read_columns(headers, columns)


def _read(files: list[Header], columns: Mapping[str, Column], text: set[str], block_size: int) -> Table:
    names = list(columns)
    # kept as float32 in the block once known to be non-integer numbers: a typed file's inexact autos
    compact = {c for c in names if columns[c].kind == "auto" and not columns[c].exact and c not in text}
    in_block = tuple(c for c in names if (columns[c].kind == "number" and c not in text) or c in compact)
    # a delimited row holds at least one byte per column: a bound on the rows that costs nothing
    # (untouched pages of an np.empty array are never resident)
    capacity = sum(h.num_rows if h.types else (h.size - h.data_offset) // len(h.names) + 1 for h in files)
    block = np.empty((capacity, len(in_block)), np.float32)
    chunks = {c: [] for c in names if c in text}  # each batch's dictionary array, in row order
    ints = {c: np.empty(capacity, np.int32) for c in names if columns[c].integers and c not in text}
    floats = {c: np.empty(capacity, np.float64) for c in names
              if c not in text and c not in ints and (c not in in_block or c in compact)}  # fmt: skip
    at, counts, touched = 0, [], 0
    types = {c: _TEXT if c in text else pa.int64() if c in ints else pa.float64() for c in names}  # delimited files
    for h in files:
        start = end = at
        try:  # a typed file's whole columns, one at a time, or a delimited file's rows, a block at a time
            for batch in _typed_batches(h, names) if h.types else _open(h, types, block_size=block_size):
                n = batch.num_rows
                if at + n > touched:  # pages first touched in row order (docs/data.md: its evidence is mixed)
                    block[touched : at + n] = 0
                    touched = at + n
                for c, array in zip(batch.schema.names, batch.columns):
                    if c in ints:
                        _put_ints(ints, c, at, array)
                        continue
                    array = _as_type(array, c in text)
                    if c in compact:
                        _put_compact(floats, block, in_block.index(c), c, at, array.to_numpy(zero_copy_only=False))
                    elif c in chunks:
                        chunks[c].append(array)
                        if len(chunks[c]) > 1 and 2 * sum(map(len, chunks[c][1:])) >= len(chunks[c][0]):
                            chunks[c] = [_combine(chunks[c])]
                    elif c in floats:
                        floats[c][at : at + n] = array.to_numpy(zero_copy_only=False)
                    else:
                        block[at : at + n, in_block.index(c)] = array.to_numpy(zero_copy_only=False)
                end = max(end, at + n)
                at = start if h.types else at + n  # a typed file's next batch is its next column
        except pa.ArrowInvalid as e:
            raise _Failed(h, e) from None
        at = end
        if at == start:
            raise DataError("has a header but no data rows", path=h.path)
        counts.append(at - start)
        pa.default_memory_pool().release_unused()  # hand pyarrow's freed blocks back after each file
    lines = np.concatenate([np.arange(1, n + 1) if h.types else _lines(h, n) for h, n in zip(files, counts)])
    table = Table({}, {}, [h.path for h in files], np.repeat(np.arange(len(files), dtype=np.int16), counts),
                  lines, block[:at], in_block)  # fmt: skip
    for c in names:
        if c in compact:  # every digit while type inference needs them, else the block's float32 column
            table.auto[c] = AutoColumn(c, None, table, numbers=floats.pop(c)[:at] if c in floats else table.numeric[c])
        elif c in floats:
            x = floats.pop(c)[:at]
            if columns[c].kind == "auto":
                table.auto[c] = AutoColumn(c, None, table, numbers=x)
            else:  # 0/1 (and missing) labels as float32, exactly: half the memory
                table.labels[c] = x.astype(np.float32) if ((x == 0) | (x == 1) | np.isnan(x)).all() else x
    for c in [c for c in names if c in chunks or c in ints]:  # a column at a time: memory (two threads were no faster)
        try:
            factor = merge_chunks(chunks.pop(c)) if c in chunks else _integer_factor(ints.pop(c)[:at])
        except TooWide as e:
            raise AutoColumn(c, None, table).error(e.row, str(e)) from None
        _finish(table, c, columns[c], factor)
        pa.default_memory_pool().release_unused()  # the column's arrow buffers, before the next one's
    return table


def _put_compact(floats: dict, block: np.ndarray, j: int, name: str, at: int, x: np.ndarray) -> None:
    """Stores a batch of an inexact auto column in the block, and its float64 digits until a
    non-integer shows the column numeric (then they are let go). An infinity makes the column
    categorical by its text: it is read again as text."""
    if np.isinf(x).any():
        raise _AsText(name)
    block[at : at + len(x), j] = x
    if name in floats:
        floats[name][at : at + len(x)] = x
        if (x != np.round(x))[~np.isnan(x)].any():
            del floats[name]


def _put_ints(ints: dict, name: str, at: int, array: pa.Array) -> None:
    """Stores a batch of integer ids (int32 until a value needs int64); a missing one: read as text."""
    if array.null_count:
        raise _AsText(name)  # which missing-value text it was matters to the codes
    x, column = array.to_numpy(), ints[name]
    if column.dtype == np.int32 and len(x) and (x.min() < -(2**31) or x.max() >= 2**31):
        ints[name] = np.empty(len(column), np.int64)
        ints[name][:at] = column[:at]
    ints[name][at : at + len(x)] = x


def _integer_factor(x: np.ndarray) -> Factor:
    """The factor of integer ids, coded against their decimal texts (what reading them as text gives)."""
    encoded = pc.dictionary_encode(pa.array(x))
    ids = encoded.dictionary.to_numpy()
    order = np.argsort(_text_order_key(ids), kind="stable")
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return Factor(rank[encoded.indices.to_numpy(zero_copy_only=False)], ids[order])


def _text_order_key(ids: np.ndarray) -> np.ndarray:
    """A key that sorts integers as their decimal texts do: ``-`` first, then digit by digit, a prefix
    first (``"10" < "100" < "2"``): the magnitude padded with zeros to the longest, then the digit
    count; the texts themselves when the padded magnitude would not fit 63 bits."""
    magnitude = np.abs(ids).astype(np.uint64)
    digits = np.searchsorted(10 ** np.arange(1, 20, dtype=np.uint64), magnitude, side="right").astype(np.uint64) + 1
    longest = int(digits.max()) if len(ids) else 1
    if longest > 17:
        return ids.astype(f"<U{longest + 1}")
    key = magnitude * np.uint64(10) ** (np.uint64(longest) - digits) * np.uint64(20) + digits
    return key | (ids >= 0).astype(np.uint64) << np.uint64(63)


def _combine(chunks: list[pa.DictionaryArray]) -> pa.DictionaryArray:
    """One dictionary array of a column's chunks: done whenever the chunks after the first hold half
    as many rows as it, so that few per-batch dictionaries are held and unifying (which hashes every
    chunk's dictionary) costs a few passes over the column's distinct values in all."""
    return pa.chunked_array(chunks, _TEXT).unify_dictionaries().combine_chunks()


def merge_chunks(chunks: list[pa.DictionaryArray], *, strip: bool = True) -> Factor:
    """The factor of a column's per-batch dictionary arrays (one dictionary for all of them,
    pyarrow's ``unify_dictionaries``), stripped, coded against sorted distinct values."""
    unified = pa.chunked_array(chunks, _TEXT).unify_dictionaries()
    codes = np.empty(len(unified), np.int32)
    at = 0
    for chunk in unified.chunks:
        codes[at : at + len(chunk)] = chunk.indices.to_numpy(zero_copy_only=False)
        at += len(chunk)
    return sorted_factor(unified.chunk(0).dictionary if chunks else pa.array([], pa.string()), codes, strip=strip)


def _finish(table: Table, name: str, spec: Column, factor: Factor) -> None:
    """Files a column read as text under its kind; its first bad number or label raises."""
    if spec.kind == "factor":
        table.categorical[name] = _replace_missing(factor, spec.missing_token)
    elif spec.kind == "auto":
        table.auto[name] = AutoColumn(name, factor, table)
    else:
        x, bad = _number_column(factor, "label value {!r}" if spec.kind == "label" else "value {!r} in numeric column")
        if bad is not None:
            raise AutoColumn(name, None, table).error(*bad)
        if spec.kind == "label":
            table.labels[name] = x
        else:
            table.numeric[name] = x.astype(np.float32)
