"""Parquet and Arrow IPC (Feather) files read into the columns :mod:`mtl.data.tabular` uses.

A file is columnar when it starts with the magic bytes ``PAR1`` (Parquet), ``ARROW1``
(Arrow IPC file, i.e. Feather v2) or ``FEA1`` (Feather v1), or, failing that, when its
name ends in ``.parquet``/``.pq`` or ``.arrow``/``.feather``/``.ipc`` (an Arrow IPC
stream); every other file is delimited text (:mod:`mtl.data.delimited`).

The file is already typed and columnar, so it is read with pyarrow at once (only the
columns asked for) and never cached as raw columns. Column kinds and value rules are
those of delimited files, so that a Parquet file and the CSV of the same data load
alike:

* Integer, floating-point and boolean columns are numbers (a null is missing; a NaN
  too); ``auto`` columns of them are typed by the same rule as text columns
  (:class:`NumberColumn`).
* Every other type (strings, dates, timestamps, ...) is read as text: stripped,
  with :data:`~mtl.data.delimited.MISSING_VALUES` and nulls missing
  (:class:`~mtl.data.delimited.AutoColumn`). Nested types are refused.
* Errors are :class:`~mtl.data.errors.DataError` s naming the file, the row (given as
  ``line``: the 1-based row number) and the column, with the messages of delimited files.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from mtl.data.delimited import AutoColumn, Column, Header, Table, check_header_names, label_column, number_column
from mtl.data.errors import DataError
from mtl.data.frame import Factor, FactorBuilder, int_factor, ints_as_text, merge_values, unique_inverse

MAGIC = ((b"PAR1", "parquet"), (b"ARROW1", "arrow"), (b"FEA1", "arrow"))
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
FORMAT_NAMES = {"parquet": "Parquet", "arrow": "Arrow IPC / Feather"}


def file_format(path: str | os.PathLike) -> str:
    """``"parquet"``, ``"arrow"`` or ``"delimited"``: by the magic bytes, else by the extension."""
    path = os.fspath(path)
    if os.path.isfile(path):
        with open(path, "rb") as f:
            head = f.read(6)
        for magic, name in MAGIC:
            if head.startswith(magic):
                return name
    return EXTENSIONS.get(os.path.splitext(path)[1].lower(), "delimited")


@dataclasses.dataclass
class ColumnarHeader(Header):
    """The column names of a Parquet / Arrow file (``line`` 0: there is no header line)."""

    format: str = "parquet"
    num_rows: int = 0


def read_header(path: str | os.PathLike) -> ColumnarHeader:
    """The schema of a columnar file, checked like a delimited header (names non-empty and distinct)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError("file not found", path=path)
    if not os.path.isfile(path):
        raise DataError("is not a regular file", path=path)
    size = os.path.getsize(path)
    if size == 0:
        raise DataError("file is empty", path=path)
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            meta = pq.read_metadata(path)
            schema, rows = meta.schema.to_arrow_schema(), meta.num_rows
        else:
            schema, rows = _arrow_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot be read as {FORMAT_NAMES[fmt]}: {e}", path=path) from None
    names = [str(n) for n in schema.names]
    check_header_names(names, path, 1)
    for field in schema:
        if pa.types.is_nested(field.type):
            raise DataError(f"has type {field.type}, which is neither numbers nor text", path=path,
                            column=field.name)  # fmt: skip
    if rows == 0:
        raise DataError("has a header but no data rows", path=path)
    return ColumnarHeader(path, names, "", 0, 0, size, format=fmt, num_rows=rows)


def _arrow_schema(path: str) -> tuple[pa.Schema, int]:
    try:
        with ipc.open_file(pa.memory_map(path)) as reader:
            return reader.schema, sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        table = _read_arrow(path, None)  # Feather v1 or an IPC stream
        return table.schema, table.num_rows


def _read_arrow(path: str, columns: Sequence[str] | None) -> pa.Table:
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"ARROW1") or head.startswith(b"FEA1"):
        return feather.read_table(path, columns=columns, memory_map=True)
    with ipc.open_stream(pa.memory_map(path)) as reader:
        table = reader.read_all()
    return table if columns is None else table.select(list(columns))


def read_table(header: ColumnarHeader, columns: Sequence[str]) -> pa.Table:
    """The named columns of a columnar file as a pyarrow table."""
    try:
        if header.format == "parquet":
            table = pq.read_table(header.path, columns=list(columns))
        else:
            table = _read_arrow(header.path, list(columns))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot be read as {FORMAT_NAMES[header.format]}: {e}", path=header.path) from None
    if table.num_rows != header.num_rows:
        raise DataError(f"changed while it was read ({header.num_rows:,} -> {table.num_rows:,} rows)",
                        path=header.path)  # fmt: skip
    return table


# ---------------------------------------------------------------- typed columns


def is_number_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _decide(x: np.ndarray, max_categorical_distinct: int) -> tuple[str, str]:
    """The numeric-or-categorical rule of delimited files (:func:`mtl.data.delimited.infer_column_type`)
    on the sorted distinct numbers ``x`` of a column."""
    if not np.all(np.isfinite(x)):
        return "categorical", "non-finite numbers"
    if not np.all(x == np.round(x)):
        return "numeric", f"non-integer numbers, {x.size} distinct"
    if x.size > max_categorical_distinct:
        return "numeric", f"{x.size} distinct integers > {max_categorical_distinct}"
    return "categorical", f"{x.size} distinct integers <= {max_categorical_distinct}"


def _number_text(x: np.ndarray) -> np.ndarray:
    """Distinct numbers as the text a delimited file would hold: integers plainly, others by ``repr``."""
    if x.dtype.kind in "iu":
        return ints_as_text(x.astype(np.int64))
    if np.all(np.isfinite(x)) and np.all(x == np.round(x)) and (not len(x) or np.abs(x).max() < 2**53):
        return ints_as_text(x.astype(np.int64))
    return np.array([repr(float(v)) for v in x], dtype=str)


@dataclasses.dataclass
class NumberColumn:
    """A numeric column of a columnar file, typed by the caller like
    :class:`~mtl.data.delimited.AutoColumn` (same interface).

    ``values`` is int64 when nothing is missing and every value is an integer type,
    else float64 with NaN for missing (nulls and NaNs alike).
    """

    name: str
    values: np.ndarray
    path: str
    lines: np.ndarray

    @staticmethod
    def of(array: pa.ChunkedArray, *, name: str, path: str, lines: np.ndarray) -> "NumberColumn":
        t = array.type
        if pa.types.is_boolean(t):
            array = pc.cast(array, pa.int8())
        elif pa.types.is_decimal(t):
            array = pc.cast(array, pa.float64())
        if pa.types.is_integer(array.type) and array.null_count == 0:
            values = array.to_numpy().astype(np.int64, copy=False)
        else:
            floats = pc.cast(array, pa.float64())
            values = (floats.fill_null(np.nan) if floats.null_count else floats).to_numpy()
        return NumberColumn(name, values, path, lines)

    @property
    def missing(self) -> np.ndarray | None:
        return None if self.values.dtype.kind == "i" else np.isnan(self.values)

    def distinct(self) -> np.ndarray:
        """Sorted distinct non-missing values."""
        x = self.values
        if x.dtype.kind == "f":
            x = x[~np.isnan(x)]
            if not (np.isfinite(x).all() and (x == np.round(x)).all() and np.abs(x).max(initial=0) < 2**53):
                return np.unique(x)
            x = x.astype(np.int64)
        low, high = int(x.min(initial=0)), int(x.max(initial=0))
        if high - low < 4 * len(x) + 1024:  # a dense range: count instead of sort
            return np.flatnonzero(np.bincount(x - low, minlength=high - low + 1)).astype(np.int64) + low
        return np.unique(x)

    def infer(self, *, max_categorical_distinct: int, others: Sequence["NumberColumn"] = ()) -> tuple[str, str]:
        """The type rule of delimited files over this column and ``others`` (for a column with
        fractions, without counting its distinct values)."""
        parts = [self, *others]
        floats = [p.values for p in parts if p.values.dtype.kind == "f"]
        if any(np.isinf(x).any() for x in floats):
            return "categorical", "non-finite numbers"
        if any(((x != np.round(x)) & ~np.isnan(x)).any() for x in floats):
            return "numeric", "non-integer numbers"
        x = np.unique(np.concatenate([p.distinct().astype(np.float64) for p in parts]))
        if x.size == 0:
            return "categorical", "all values missing"
        return _decide(x, max_categorical_distinct)

    def as_numbers(self) -> np.ndarray:
        return self.values.astype(np.float32)

    def as_factor(self, missing_token: str | None) -> Factor:
        """The values as a categorical column (as text, like a delimited file's); missing values
        become ``missing_token`` (``None``: the empty string, which is a missing value)."""
        missing = self.missing
        if missing is None:
            uniq = self.distinct().astype(np.int64)
            low, high = int(uniq[0]), int(uniq[-1])
            if high - low < 4 * len(self.values) + 1024:  # a dense range: look the ranks up
                rank = np.zeros(high - low + 1, np.int32)
                rank[uniq - low] = np.arange(len(uniq), dtype=np.int32)
                return int_factor(uniq, rank[self.values - low])
            return int_factor(uniq, np.searchsorted(uniq, self.values).astype(np.int32))
        uniq, present_codes = unique_inverse(self.values[~missing])
        codes = np.full(len(self.values), len(uniq), np.int32)  # missing: one value after the others
        codes[~missing] = present_codes
        text = _number_text(uniq)
        if missing.any():
            text = np.append(text, "" if missing_token is None else missing_token)
        return merge_values(text, codes)

    @property
    def factor(self) -> Factor:
        return self.as_factor(None)

    def label_values(self, *, kind: str) -> tuple[np.ndarray | None, DataError | None]:
        """``(float64 labels, error or None)`` with the errors of delimited label columns."""
        x = self.values.astype(np.float64)
        missing = np.isnan(x)
        where = dict(path=self.path, column=self.name)
        if missing.any():
            rows = np.flatnonzero(missing)
            return None, DataError(f"label value is missing (null; {rows.size} such rows)",
                                   line=int(self.lines[rows[0]]), **where)  # fmt: skip
        if kind == "binary":
            rows = np.flatnonzero((x != 0) & (x != 1))
            if rows.size:
                return None, DataError(
                    f"label value {str(_number_text(x[rows[:1]])[0])!r} is not 0 or 1 (binary task; {rows.size} such "
                    "rows). List the column in regression_columns if it is real-valued.",
                    line=int(self.lines[rows[0]]), **where,
                )  # fmt: skip
        else:
            rows = np.flatnonzero(~np.isfinite(x))
            if rows.size:
                return None, DataError(f"label value {str(_number_text(x[rows[:1]])[0])!r} is not finite",
                                       line=int(self.lines[rows[0]]), **where)  # fmt: skip
        return x, None


def text_column(array: pa.ChunkedArray, *, name: str, path: str, lines: np.ndarray) -> AutoColumn:
    """A non-numeric column as stripped text (nulls become the empty string, a missing value)."""
    if not (pa.types.is_string(array.type) or pa.types.is_dictionary(array.type)):
        try:
            array = pc.cast(array, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DataError(f"of type {array.type} cannot be read as text: {e}", path=path, column=name) from None
    elif pa.types.is_dictionary(array.type):
        array = pc.cast(array, pa.string())
    builder = FactorBuilder(len(array))
    builder.add(array.fill_null(""))
    return AutoColumn(name, builder.factor(strip=True), path, lines)


def read_columns(header: ColumnarHeader, columns: Mapping[str, Column]) -> Table:
    """The named columns of a columnar file as a delimited :class:`~mtl.data.delimited.Table`
    (same kinds, same errors; ``lines`` are the 1-based row numbers)."""
    unknown = [c for c in columns if c not in header.names]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the header of {header.path}")
    table = read_table(header, list(columns))
    lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    out = Table(header, {}, {}, {}, {}, lines, {})
    for name, spec in columns.items():
        array = table.column(name)
        column = (NumberColumn.of(array, name=name, path=header.path, lines=lines) if is_number_type(array.type)
                  else text_column(array, name=name, path=header.path, lines=lines))  # fmt: skip
        if spec.kind == "auto":
            out.auto[name] = column
        elif spec.kind == "factor":
            out.factors[name] = column.as_factor(spec.missing_token)
        elif spec.kind == "number":
            if isinstance(column, NumberColumn):
                out.numbers[name] = column.as_numbers()
            else:
                out.numbers[name], error = number_column(column.factor, path=header.path, lines=lines, column=name)
                if error is not None:
                    out.errors[name] = error
        else:
            if isinstance(column, NumberColumn):
                x, error = column.label_values(kind=spec.task)
            else:
                x, error = label_column(column.factor, kind=spec.task, path=header.path, lines=lines, column=name)
            if error is not None:
                out.errors[name] = error
            out.labels[name] = x
        del array
    return out


__all__ = ["ColumnarHeader", "NumberColumn", "file_format", "read_columns", "read_header", "read_table"]
