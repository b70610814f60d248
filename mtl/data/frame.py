"""Raw columns of one or more files, before any split, vocabulary or scaling.

A :class:`Frame` is what every reader produces and what the cache and the TFDS
builders store: categorical columns as :class:`Factor` s (integer codes into a
sorted array of distinct string values) and numeric columns as float32 arrays
with NaN for missing values. Each row remembers its source file and 1-based line
number so that later checks can say where a bad value came from.

Turning a frame into model inputs (train-only vocabularies, standardisation,
labels, splits) is :mod:`mtl.data.preprocess`'s job. Frames are cached
(:func:`cached`, :mod:`mtl.data.cache`) and come back memory-mapped.

The factor toolkit here (:class:`FactorBuilder`, :class:`StringColumn`) turns
pyarrow blocks of text into factors without a Python object per value: integer ids
are kept as integers and sorted as text once, other text is hashed per block by
pyarrow and merged at the end.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl.data import cache

#: The value of a missing categorical entry, a category of its own.
MISSING_TOKEN = "<missing>"
#: Distinct values of a column are kept as a fixed-width numpy array (4 bytes per
#: character of the longest value, for every value); a column that would need more
#: than this many bytes is refused (one enormous value among many distinct ones).
MAX_DISTINCT_BYTES = 1 << 30


class Factor:
    """A categorical column: ``values[codes]`` are the row values.

    ``values`` is sorted and distinct (as text), so the coding does not depend on row
    order. ``ints``, when known, holds the values as int64 (every value an integer
    written plainly, e.g. an id); ``values`` is then made from it only when asked for,
    and merging factors needs no parsing.
    """

    def __init__(self, codes: np.ndarray, values: np.ndarray | None = None, ints: np.ndarray | None = None):
        if values is None and ints is None:
            raise ValueError("a factor needs its values or their integers")
        self.codes = codes  # (N,) int32
        self._values = values  # (V,) str
        self.ints = ints  # (V,) int64 or None

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._values = ints_as_text(self.ints)
        return self._values

    @property
    def num_values(self) -> int:
        return len(self.ints) if self.ints is not None else len(self._values)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __repr__(self) -> str:
        return f"Factor({len(self)} rows, {self.num_values} values)"

    def strings(self) -> np.ndarray:
        return self.values[self.codes]

    def take(self, idx: np.ndarray) -> "Factor":
        return Factor(self.codes[idx], self._values, self.ints)


def factorize(values: Sequence[str] | np.ndarray, *, strip: bool = False) -> Factor:
    """Codes strings (optionally stripped of surrounding whitespace) against their sorted distinct values."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        uniq, codes = np.unique(values, return_inverse=True)
        codes = codes.astype(np.int32).reshape(-1)
    else:  # one dictionary pass in first-seen order, then re-coded to sorted order
        table: dict[str, int] = {}
        first_seen = np.fromiter((table.setdefault(v, len(table)) for v in values), np.int32, count=len(values))
        seen = np.array(list(table), dtype=str) if table else np.zeros((0,), dtype="<U1")
        order = np.argsort(seen, kind="stable")
        remap = np.empty(len(order), np.int32)
        remap[order] = np.arange(len(order), dtype=np.int32)
        codes, uniq = remap[first_seen], seen[order]
    if strip:  # strip the few distinct values, not every row, then merge values equal after stripping
        uniq, merge = np.unique(np.char.strip(uniq), return_inverse=True)
        codes = merge.astype(np.int32).reshape(-1)[codes] if len(codes) else codes
    return Factor(codes, uniq)


# ---------------------------------------------------------------- building factors from pyarrow blocks


def unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True)`` by sorting (numpy 2.4's hash-based ``unique`` is
    many times slower on millions of integers); the inverse is int32."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    new = np.ones(len(x), bool)
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(len(x), np.int32)
    inverse[order] = np.cumsum(new, dtype=np.int64) - 1
    return ordered[new], inverse


def unique_sorted(x: np.ndarray) -> np.ndarray:
    """``np.unique(x)`` by sorting."""
    ordered = np.sort(x)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


class Buffer:
    """A 1-D array filled block by block, allocated once at ``capacity`` (an upper bound,
    e.g. the number of lines) so that no block is copied twice; pages never written are
    never resident. Grows by doubling when no bound was given."""

    def __init__(self, dtype, capacity: int | None = None):
        self.data = np.empty(max(1, capacity or (1 << 16)), dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        n = len(values)
        if self.size + n > len(self.data):
            grown = np.empty(max(2 * len(self.data), self.size + n), self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : self.size + n] = values
        self.size += n

    def array(self) -> np.ndarray:
        return self.data[: self.size]


class TooWide(Exception):
    """A column whose distinct values would need more than :data:`MAX_DISTINCT_BYTES`."""

    def __init__(self, value: int, length: int, count: int, codes: np.ndarray):
        super().__init__(f"a value of {length} characters among {count} distinct values")
        self.value, self.length, self.count, self.codes = value, length, count, codes

    def error(self, path: str, lines: np.ndarray, column: str):
        from mtl.data.errors import DataError

        row = int(np.flatnonzero(self.codes == self.value)[0])
        return DataError(
            f"a value of {self.length:,} characters among {self.count:,} distinct values: the column would need "
            f"{self.length * self.count * 4 / 2**30:.1f} GiB as a table of values (limit "
            f"{MAX_DISTINCT_BYTES / 2**30:.1f} GiB); is the file cut or garbled here?",
            path=path, line=int(lines[row]), column=column,
        )  # fmt: skip


def merge_values(values: np.ndarray, codes: np.ndarray) -> Factor:
    """Codes against sorted distinct ``values`` (merging equal ones); ``codes`` is recoded in place."""
    uniq, inverse = np.unique(values, return_inverse=True)
    inverse = inverse.astype(np.int32).reshape(-1)
    if len(uniq) == len(values) and np.array_equal(inverse, np.arange(len(values))):
        return Factor(codes, uniq)
    _recode(codes, inverse)
    return Factor(codes, uniq)


def _recode(codes: np.ndarray, mapping: np.ndarray) -> None:
    for start in range(0, len(codes), 1 << 20):
        codes[start : start + (1 << 20)] = mapping[codes[start : start + (1 << 20)]]


def sorted_factor(distinct: pa.Array, codes: np.ndarray) -> Factor:
    """A factor from codes into ``distinct`` (pyarrow strings, maybe repeated): the values
    sorted, duplicates merged, ``codes`` recoded in place."""
    order = pc.sort_indices(distinct)  # bytewise UTF-8: the code point order numpy uses
    ordered = distinct.take(order)
    new = np.ones(len(ordered), bool)  # first of each run of equal values
    if len(ordered) > 1:
        new[1:] = ~pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1)).to_numpy(zero_copy_only=False)
    remap = np.empty(len(ordered), np.int32)
    remap[order.to_numpy(zero_copy_only=False)] = np.cumsum(new) - 1
    _recode(codes, remap)
    uniq = ordered.filter(pa.array(new))
    if not len(uniq):
        return Factor(codes, np.zeros(0, "<U1"))
    lengths = pc.utf8_length(uniq).to_numpy(zero_copy_only=False)
    longest = int(np.argmax(lengths))
    if len(uniq) * int(lengths[longest]) * 4 > MAX_DISTINCT_BYTES:
        raise TooWide(longest, int(lengths[longest]), len(uniq), codes)
    values = np.asarray(uniq.to_numpy(zero_copy_only=False), dtype=str)
    if len(values) > 1 and not (values[1:] > values[:-1]).all():  # numpy drops trailing NULs: merge again
        return merge_values(values, codes)
    return Factor(codes, values)


class StringColumn:
    """A column as dictionary blocks: int32 indices into each block's own dictionary."""

    def __init__(self, capacity: int | None = None):
        self.indices = Buffer(np.int32, capacity)
        self.dictionaries: list[pa.Array] = []
        self.block_sizes: list[int] = []

    def __len__(self) -> int:
        return self.indices.size

    def add(self, array) -> None:
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        for chunk in chunks:
            if not isinstance(chunk, pa.DictionaryArray):
                chunk = chunk.dictionary_encode()
            if chunk.null_count:
                raise RuntimeError("unexpected null in a string column")
            self.indices.append(chunk.indices.to_numpy(zero_copy_only=False))
            self.dictionaries.append(chunk.dictionary.cast(pa.string()))
            self.block_sizes.append(len(chunk))

    def factor(self, *, strip: bool = True) -> Factor:
        """Sorted distinct (stripped) values and codes."""
        codes = self.indices.array()
        if not self.dictionaries:
            return Factor(np.zeros(0, np.int32), np.zeros(0, "<U1"))
        merged = pa.concat_arrays(self.dictionaries)
        distinct = pc.unique(merged)
        position = pc.index_in(merged, value_set=distinct).to_numpy(zero_copy_only=False).astype(np.int32)
        at, offset = 0, 0
        for d, n in zip(self.dictionaries, self.block_sizes):  # block indices -> distinct ids, in place
            codes[at : at + n] = position[offset : offset + len(d)][codes[at : at + n]]
            at += n
            offset += len(d)
        self.indices, self.dictionaries, self.block_sizes = None, [], []
        del merged, position
        if strip:
            distinct = pc.utf8_trim_whitespace(distinct)
        return sorted_factor(distinct, codes)


_POWERS_OF_TEN = np.array([10**k for k in range(19)], np.int64)


def _plainly_written(strings: pa.Array) -> bool:
    """For strings that all parse as int64: whether each is written exactly as ``str(int(s))``.

    pyarrow's string-to-int64 cast refuses spaces, ``+``, exponents and empty strings, so
    the only other forms it accepts start with a zero followed by more (``"007"``) or with
    ``"-0"``; the first two bytes of each string tell (read straight from the buffers).
    """
    if strings.null_count:
        return False
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=len(strings) + 1, offset=strings.offset * 4)
    if len(strings) == 0:
        return True
    data = np.frombuffer(data_buffer, np.uint8)
    starts = offsets[:-1]
    first = data[starts]
    long = np.diff(offsets) > 1
    second = data[np.minimum(starts + 1, len(data) - 1)]
    return not bool((((first == 48) | ((first == 45) & (second == 48))) & long).any())


class NotPlainIntegers(Exception):
    """Raised by :meth:`FactorBuilder.factor` (``check="total"``) when some integer in the column
    was not written plainly (``"007"``): the column must be read again as text."""


class FactorBuilder:
    """Builds a :class:`Factor` from blocks of strings (pyarrow arrays).

    Integer ids written plainly (``"17"``, not ``"017"``, ``"+17"`` or ``" 17"``), by far
    the commonest categorical values, are kept as int64 and sorted as text only once at
    the end: no hashing of every value. The first block that is anything else turns the
    column into dictionary blocks (:class:`StringColumn`). Both give the same factor.

    pyarrow's string-to-int64 cast refuses spaces, signs ``+``, exponents and empty
    strings; what it accepts beyond plain writing starts with a superfluous zero
    (``"007"``, ``"-0"``). ``check="each"`` looks at the first bytes of every block;
    ``check="total"`` (faster) compares the number of bytes of all the text with the
    number plain writing needs, once at the end, and raises :class:`NotPlainIntegers`
    when they differ (the caller then reads the column again with ``check="each"``).
    """

    def __init__(self, capacity: int | None = None, *, check: str = "each"):
        self.capacity = capacity
        self.check = check
        self.ints: Buffer | None = Buffer(np.int32, capacity)  # int64 once a value needs it
        self.text_bytes = 0
        self.strings: StringColumn | None = None

    def __len__(self) -> int:
        return self.ints.size if self.ints is not None else len(self.strings)

    def _as_ints(self, chunk) -> np.ndarray | None:
        if self.ints.data.dtype == np.int32:
            try:
                return pc.cast(chunk, pa.int32()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        try:
            x = pc.cast(chunk, pa.int64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if self.ints.data.dtype == np.int32:  # ids beyond int32: widen what was read
            wide = Buffer(np.int64, max(len(self.ints.data), self.capacity or 0))
            wide.append(self.ints.array())
            self.ints = wide
        return x

    def add(self, array) -> None:
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        for chunk in chunks:
            if self.ints is not None and pa.types.is_string(chunk.type) and not chunk.null_count:
                x = self._as_ints(chunk)
                if x is not None and (self.check == "total" or _plainly_written(chunk)):
                    if self.check == "total":
                        offsets = np.frombuffer(chunk.buffers()[1], np.int32, count=len(chunk) + 1,
                                                offset=chunk.offset * 4)  # fmt: skip
                        self.text_bytes += int(offsets[-1]) - int(offsets[0])
                    self.ints.append(x)
                    continue
            if self.ints is not None:
                self._to_strings()
            self.strings.add(chunk)

    def _to_strings(self) -> None:
        """Hands the integers read so far over to dictionary blocks."""
        ints = self.ints.array()
        if self.check == "total" and len(ints):
            uniq, inverse = unique_inverse(ints)
            self._check_total(uniq.astype(np.int64), np.bincount(inverse, minlength=len(uniq)))
        self.strings = StringColumn(self.capacity)
        if len(ints):
            uniq, inverse = unique_inverse(ints)
            dictionary = pa.array(uniq).cast(pa.string())
            self.strings.add(pa.DictionaryArray.from_arrays(pa.array(inverse), dictionary))
        self.ints = None

    def _check_total(self, uniq: np.ndarray, counts: np.ndarray) -> None:
        if uniq.min() == np.iinfo(np.int64).min:
            raise NotPlainIntegers
        plain = int(np.dot(counts.astype(np.int64), _digits(uniq) + (uniq < 0)))
        if plain != self.text_bytes:
            raise NotPlainIntegers

    def factor(self, *, strip: bool = True) -> Factor:
        if self.ints is None:
            return self.strings.factor(strip=strip)
        x = self.ints.array()
        self.ints = None
        if len(x) == 0:
            return Factor(np.zeros(0, np.int32), np.zeros(0, "<U1"))
        low, high = int(x.min()), int(x.max())
        if high - low < 4 * len(x) + 1024:  # a dense range: count instead of sort
            x -= low  # in place: the buffer is ours
            counts = np.bincount(x, minlength=high - low + 1)
            present = np.flatnonzero(counts)
            rank = np.full(high - low + 1, -1, np.int32)
            rank[present] = np.arange(len(present), dtype=np.int32)
            uniq = present.astype(np.int64) + low
            counts = counts[present]
            codes = rank[x]
        else:
            uniq, codes = unique_inverse(x)
            uniq = uniq.astype(np.int64)
            counts = np.bincount(codes, minlength=len(uniq)) if self.check == "total" else None
        del x
        if self.check == "total":
            self._check_total(uniq, counts)
        return int_factor(uniq, codes)


def _digits(values: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.searchsorted(_POWERS_OF_TEN, np.abs(values), side="right"))


def int_factor(uniq: np.ndarray, codes: np.ndarray) -> Factor:
    """A factor of distinct int64 values written plainly, ``codes`` indexing ``uniq`` (recoded in
    place): values sorted as TEXT, without building and sorting strings. Decimal strings compare
    like ``(sign, |x| scaled to 18 digits, number of digits)``: ``"-5" < "10" < "100" < "9"``."""
    if len(uniq) == 0 or np.abs(uniq).max() >= 10**18:
        return sorted_factor(pa.array(uniq).cast(pa.string()), codes)
    digits = _digits(uniq)
    scaled = np.abs(uniq) * _POWERS_OF_TEN[18 - digits]
    order = np.lexsort((digits, scaled, uniq >= 0))
    remap = np.empty(len(uniq), np.int32)
    remap[order] = np.arange(len(uniq), dtype=np.int32)
    _recode(codes, remap)
    return Factor(codes, ints=uniq[order])


def ints_as_text(x: np.ndarray) -> np.ndarray:
    """``x.astype(str)``, digit by digit in numpy (numpy's own conversion goes through Python
    integers)."""
    if len(x) == 0:
        return np.zeros(0, "<U1")
    if np.abs(x).max() >= 10**18 or x.min() == np.iinfo(np.int64).min:
        return x.astype(str)
    negative = x < 0
    magnitude = np.abs(x)
    digits = _digits(magnitude)
    lead = negative.astype(np.int64)
    width = int((digits + lead).max())
    chars = np.zeros((len(x), width), np.uint32)  # NUL-padded code points: numpy's U layout
    chars[negative, 0] = ord("-")
    rows = np.arange(len(x))
    for k in range(width):  # the k-th digit from the right goes to column lead + digits - 1 - k
        column = lead + digits - 1 - k
        has = k < digits
        chars[rows[has], column[has]] = ord("0") + (magnitude[has] // _POWERS_OF_TEN[k]) % 10
    return chars.view(f"<U{width}").reshape(len(x))


@dataclasses.dataclass
class Frame:
    """Columns of one or more source files.

    Attributes:
      categorical: name -> :class:`Factor`, in column order.
      numeric: name -> (N,) float32, NaN where missing, in column order (what models
        see and what the TFDS builders store, so every reader of the same file
        gives the same numbers; a float64 column given here is rounded to float32).
      sources: the source files; ``source_ids[i]`` indexes it for row ``i``.
      lines: (N,) 1-based line number of each row in its source file.
      block: optional (N, K) float32 row-major matrix holding the numeric columns named
        ``block_columns`` (``numeric[name]`` is then a view of one of its columns): rows of
        many numbers are gathered in one go (:mod:`mtl.data.preprocess`).
    """

    categorical: dict[str, Factor]
    numeric: dict[str, np.ndarray]
    sources: list[str]
    source_ids: np.ndarray  # (N,) int16
    lines: np.ndarray  # (N,) int64
    block: np.ndarray | None = None
    block_columns: tuple[str, ...] = ()

    def __post_init__(self):
        n = len(self.lines)
        for name, f in self.categorical.items():
            if len(f) != n:
                raise ValueError(f"categorical column {name!r} has {len(f)} rows, expected {n}")
        if self.block is not None:
            if self.block.shape != (n, len(self.block_columns)) or self.block.dtype != np.float32:
                raise ValueError(f"numeric block {self.block.shape} {self.block.dtype} does not fit {n} rows")
            for i, name in enumerate(self.block_columns):
                self.numeric.setdefault(name, self.block[:, i])
        for name, a in self.numeric.items():
            if a.shape != (n,):
                raise ValueError(f"numeric column {name!r} has shape {a.shape}, expected ({n},)")
            self.numeric[name] = np.asarray(a, np.float32)

    def block_view(self, name: str) -> int | None:
        """The column of :attr:`block` holding numeric column ``name`` (when it still does)."""
        if self.block is None or name not in self.block_columns:
            return None
        i = self.block_columns.index(name)
        a = self.numeric[name]
        view = self.block[:, i]
        same = a.shape == view.shape and a.strides == view.strides and (
            a.__array_interface__["data"][0] == view.__array_interface__["data"][0])
        return i if same else None

    @property
    def num_rows(self) -> int:
        return int(self.lines.shape[0])

    def column_names(self) -> list[str]:
        return list(self.categorical) + list(self.numeric)

    def locate(self, row: int) -> tuple[str, int]:
        """``(file, 1-based line)`` of a row."""
        return self.sources[int(self.source_ids[row])], int(self.lines[row])

    def take(self, idx: np.ndarray) -> "Frame":
        return Frame(
            {k: f.take(idx) for k, f in self.categorical.items()},
            {k: a[idx] for k, a in self.numeric.items()},
            list(self.sources),
            self.source_ids[idx],
            self.lines[idx],
        )

    @staticmethod
    def single_file(path: str | os.PathLike, categorical, numeric, lines=None) -> "Frame":
        n = len(next(iter(categorical.values()))) if categorical else len(next(iter(numeric.values())))
        lines = np.arange(1, n + 1, dtype=np.int64) if lines is None else np.asarray(lines, np.int64)
        return Frame(dict(categorical), dict(numeric), [os.fspath(path)], np.zeros(n, np.int16), lines)


def file_parts(frame: Frame) -> list[np.ndarray]:
    """The row indices of each source file of a frame whose rows are in file order."""
    counts = np.bincount(frame.source_ids, minlength=len(frame.sources))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def concat_frames(frames: Sequence[Frame], *, consume: bool = False) -> tuple[Frame, list[np.ndarray]]:
    """Stacks frames with the same columns; returns the frame and each part's row indices.

    ``consume=True`` empties the given frames column by column as it goes, so that
    at most one column is held twice (the frames must not be used afterwards).
    """
    if not frames:
        raise ValueError("nothing to concatenate")
    names = frames[0].column_names()
    for f in frames[1:]:
        if f.column_names() != names:
            raise ValueError("frames to concatenate have different columns")
    sources: list[str] = []
    source_ids = []
    for f in frames:
        remap = np.array([_index_of(sources, s) for s in f.sources], np.int16)
        source_ids.append(remap[f.source_ids])
    lines = np.concatenate([f.lines for f in frames])
    bounds = np.cumsum([0] + [f.num_rows for f in frames])
    parts = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    categorical = {}
    for name in list(frames[0].categorical):
        categorical[name] = concat_factors([f.categorical.pop(name) if consume else f.categorical[name] for f in frames])
    numeric = {}
    for name in list(frames[0].numeric):
        columns = [f.numeric.pop(name) if consume else f.numeric[name] for f in frames]
        numeric[name] = np.concatenate(columns)
        del columns
    return Frame(categorical, numeric, sources, np.concatenate(source_ids), lines), parts


def concat_factors(factors: Sequence[Factor]) -> Factor:
    """Stacks factors, coded against the sorted union of their values."""
    total = sum(len(f) for f in factors)
    as_ints = [f.ints if f.ints is not None else _plain_ints(f.values) for f in factors]
    if all(v is not None for v in as_ints):  # integer ids: merge as numbers, sort as text once
        uniq = unique_sorted(np.concatenate(as_ints))
        codes = np.empty(total, np.int32)
        at = 0
        for f, ints in zip(factors, as_ints):
            codes[at : at + len(f)] = np.searchsorted(uniq, ints).astype(np.int32)[f.codes]
            at += len(f)
        return int_factor(uniq, codes)
    builder = StringColumn(total)
    for f in factors:
        dictionary = pa.array(f.values, pa.string()) if len(f.values) else pa.array([], pa.string())
        builder.add(pa.DictionaryArray.from_arrays(pa.array(np.asarray(f.codes, np.int32)), dictionary))
    return builder.factor(strip=False)


def _plain_ints(values: np.ndarray) -> np.ndarray | None:
    """``values`` (strings) as int64 when every one is an integer written plainly, else ``None``."""
    if not len(values):
        return np.zeros(0, np.int64)
    if values.dtype.kind != "U":
        return None
    text = pa.array(values, pa.string())
    try:
        ints = pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if not pc.all(pc.equal(pc.cast(ints, pa.string()), text)).as_py():
        return None
    return ints.to_numpy(zero_copy_only=False)


def _index_of(items: list[str], item: str) -> int:
    if item not in items:
        items.append(item)
    return items.index(item)


def save_frame(frame: Frame, folder: str | os.PathLike, *, meta: Mapping[str, Any] | None = None) -> None:
    """Writes a frame as a cache entry (an array pack plus ``meta.json``), atomically."""
    with cache.EntryWriter(pathlib.Path(folder), kind="frame") as writer:
        writer.commit(_write_frame_arrays(frame, writer.pack, meta))


def _write_frame_arrays(frame: Frame, pack: cache.PackWriter, meta: Mapping[str, Any] | None = None) -> dict:
    n = frame.num_rows
    for i, f in enumerate(frame.categorical.values()):
        pack.save(f"cat{i}_codes", f.codes)
        if f.ints is not None:
            pack.save(f"cat{i}_ints", f.ints)
        else:
            pack.save(f"cat{i}_values", np.asarray(f.values, dtype=str))
    in_block = [name for name in frame.block_columns if frame.block_view(name) is not None]
    if in_block:
        pack.save("num_block", frame.block)
    for i, (name, a) in enumerate(frame.numeric.items()):
        if name not in in_block:
            pack.save(f"num{i}", a)
    lines_start = int(frame.lines[0]) if n else 1
    contiguous = n == 0 or (int(frame.lines[-1]) - lines_start == n - 1 and bool(np.all(np.diff(frame.lines) == 1)))
    if not contiguous:
        pack.save("lines", frame.lines)
    single = not frame.source_ids.any()
    if not single:
        pack.save("source_ids", frame.source_ids)
    return {
        "num_rows": n,
        "categorical_names": list(frame.categorical),
        "numeric_names": list(frame.numeric),
        "block_columns": list(frame.block_columns) if in_block else [],
        "sources": list(frame.sources),
        "lines_start": lines_start if contiguous else None,
        **({"source": dict(meta)} if meta else {}),
    }


def load_frame(folder: str | os.PathLike) -> Frame:
    """Reads a frame written by :func:`save_frame` (columns memory-mapped); ``ValueError`` if it
    is missing or damaged."""
    entry = cache.read_entry(pathlib.Path(folder), kind="frame")
    if entry is None:
        raise ValueError(f"{folder}: no intact frame cache entry")
    return _frame_from_entry(*entry)


def _frame_from_entry(meta: dict, arrays: dict[str, np.ndarray]) -> Frame:
    n = int(meta["num_rows"])
    categorical = {
        name: Factor(arrays[f"cat{i}_codes"], arrays.get(f"cat{i}_values"), arrays.get(f"cat{i}_ints"))
        for i, name in enumerate(meta["categorical_names"])
    }
    block_columns = tuple(meta.get("block_columns", ()))
    block = arrays.get("num_block") if block_columns else None
    numeric = {
        name: block[:, block_columns.index(name)] if name in block_columns else arrays[f"num{i}"]
        for i, name in enumerate(meta["numeric_names"])
    }
    if meta["lines_start"] is None:
        lines = arrays["lines"]
    else:
        lines = np.arange(meta["lines_start"], meta["lines_start"] + n, dtype=np.int64)
    source_ids = arrays["source_ids"] if "source_ids" in arrays else np.zeros(n, np.int16)
    return Frame(categorical, numeric, list(meta["sources"]), source_ids, lines, block, block_columns)


def cached(
    root: str | os.PathLike,
    *,
    name: str,
    sources: Sequence[str | os.PathLike],
    args: Mapping[str, Any],
    build: Callable[[], Frame],
    defer: bool = False,
) -> Frame:
    """The frame ``build()`` makes from ``sources``, through the cache under ``root``.

    The entry ``root/<name>-<key>`` is keyed by the sources' path, size and
    modification time and by ``args`` (what the reader was asked for); a damaged
    entry is rebuilt, and a source that changes while ``build()`` reads it raises a
    :class:`~mtl.data.errors.DataError` without caching anything. ``defer=True`` writes
    a new entry on a background thread (:func:`mtl.data.cache.wait_for_deferred` waits)
    while the caller goes on with the frame just parsed.
    """
    states = cache.source_states(sources)
    folder = pathlib.Path(root) / f"{name}-{cache.entry_key('frame', args, states)}"
    entry = cache.read_entry(folder, kind="frame")
    if entry is not None:
        return _frame_from_entry(*entry)
    if defer:
        try:
            frame = build()
        except Exception:
            cache.check_unchanged(states)  # a file that changed mid-read explains odd errors best
            raise
        cache.check_unchanged(states)
        # the writer keeps its own view of the columns: the caller may consume the frame meanwhile
        snapshot = Frame(dict(frame.categorical), dict(frame.numeric), list(frame.sources), frame.source_ids,
                         frame.lines, frame.block, frame.block_columns)  # fmt: skip
        cache.defer(lambda: cache.build_entry(folder, kind="frame", sources=states,
                                              build=lambda pack: _write_frame_arrays(snapshot, pack, {"args": args}),
                                              read_back=False))  # fmt: skip
        return frame
    built = []

    def make(pack):
        built.append(build())
        return _write_frame_arrays(built[0], pack, {"args": args})

    cache.build_entry(folder, kind="frame", sources=states, build=make, read_back=False)
    return built[0]  # the columns just parsed (and now safely cached), not a re-read
