"""Raw columns of one or more files, before any split, vocabulary or scaling.

A :class:`Frame` is what every reader produces and what the TFDS builders store:
categorical columns as :class:`Factor` s (int32 codes into the sorted distinct values)
and numeric columns as float32 arrays with NaN for missing values. Each row remembers its
source file and 1-based line so that later checks can say where a bad value came from.
Turning a frame into model inputs is :mod:`mtl.data.preprocess`'s job.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The value of a missing categorical entry, a category of its own.
MISSING_TOKEN = "<missing>"
#: Distinct values are kept as a numpy string array (4 bytes per character of the longest
#: value, for every value); a column that would need more than this is refused.
MAX_DISTINCT_BYTES = 1 << 30


@dataclasses.dataclass
class Factor:
    """A categorical column: ``values[codes]`` are the row values; ``values`` distinct and sorted, as
    strings or, for integer ids (:class:`mtl.data.reader.Column` ``integers``), as the integers in the
    order of their decimal texts (a third of the memory; :meth:`strings` gives text either way)."""

    codes: np.ndarray  # (N,) int32
    values: np.ndarray  # (V,) str, or integers

    @property
    def num_values(self) -> int:
        return len(self.values)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def strings(self) -> np.ndarray:
        return self.values.astype(str)[self.codes]


class TooWide(ValueError):
    """Distinct values that would need more than :data:`MAX_DISTINCT_BYTES` (``row``: one holding the longest)."""

    def __init__(self, row: int, length: int, count: int):
        super().__init__(f"a value of {length:,} characters among {count:,} distinct values: the column would need "
                         f"{length * count * 4 / 2**30:.1f} GiB as a table of values (limit "
                         f"{MAX_DISTINCT_BYTES / 2**30:.1f} GiB); is the file cut or garbled here?")  # fmt: skip
        self.row = row


def sorted_factor(dictionary: pa.Array, codes: np.ndarray, *, strip: bool = False) -> Factor:
    """The factor of ``dictionary[codes]`` (``dictionary`` may repeat values); ``codes`` is recoded in place."""
    dictionary = dictionary.cast(pa.string())
    if strip:
        dictionary = pc.utf8_trim_whitespace(dictionary)
    uniq = pc.unique(dictionary)
    uniq = uniq.take(pc.sort_indices(uniq))  # bytewise UTF-8: the code point order numpy uses
    remap = pc.index_in(dictionary, value_set=uniq).to_numpy(zero_copy_only=False).astype(np.int32)
    lengths = pc.utf8_length(uniq).to_numpy(zero_copy_only=False)
    if len(uniq) and len(uniq) * int(lengths.max()) * 4 > MAX_DISTINCT_BYTES:
        wide = np.flatnonzero(remap == int(np.argmax(lengths)))
        raise TooWide(int(np.flatnonzero(np.isin(codes, wide))[0]), int(lengths.max()), len(uniq))
    _recode(codes, remap)
    values = np.asarray(uniq.to_numpy(zero_copy_only=False), str) if len(uniq) else np.zeros(0, "<U1")
    if len(values) > 1 and not (values[1:] > values[:-1]).all():  # numpy drops trailing NULs: merge again
        values, merge = np.unique(values, return_inverse=True)
        _recode(codes, merge.astype(np.int32).reshape(-1))
    return Factor(codes, values)


def _recode(codes: np.ndarray, mapping: np.ndarray) -> None:
    for start in range(0, len(codes), 1 << 20):  # in place, a slice at a time
        codes[start : start + (1 << 20)] = mapping[codes[start : start + (1 << 20)]]


def concat_factors(factors: Sequence[Factor]) -> Factor:
    """Stacks factors, coded against the sorted union of their values."""
    values = np.unique(np.concatenate([f.values for f in factors]))
    codes = [np.searchsorted(values, f.values).astype(np.int32)[f.codes] for f in factors]
    return Factor(np.concatenate(codes) if codes else np.zeros(0, np.int32), values)


@dataclasses.dataclass
class Frame:
    """Columns of one or more source files.

    Attributes:
      categorical: name -> :class:`Factor`, in column order.
      numeric: name -> (N,) float32, NaN where missing, in column order (a float64
        column given here is rounded to float32, what models and the builders see).
      sources: the source files; ``source_ids[i]`` indexes it for row ``i``.
      lines: (N,) 1-based line of each row in its source file, or minus its 1-based record number where
        the file's lines are not counted (:func:`mtl.data.reader._lines`).
      block: optional (N, K) float32 row-major matrix holding the numeric columns named
        ``block_columns`` (``numeric[name]`` is a view of one of its columns), so that
        :mod:`mtl.data.preprocess` gathers whole rows of many numbers at once.
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
        for i, name in enumerate(self.block_columns):
            self.numeric[name] = self.block[:, i]
        for name, column in [*self.categorical.items(), *self.numeric.items()]:
            if len(column) != n:
                raise ValueError(f"column {name!r} has {len(column)} rows, expected {n}")
        self.numeric = {k: np.asarray(a, np.float32) for k, a in self.numeric.items()}

    def block_view(self, name: str) -> int | None:
        """The column of :attr:`block` that ``numeric[name]`` is (a view of), if any."""
        return self.block_columns.index(name) if name in self.block_columns else None

    @property
    def num_rows(self) -> int:
        return int(self.lines.shape[0])

    def locate(self, row: int) -> tuple[str, int]:
        """``(file, 1-based line)`` of a row."""
        return self.sources[int(self.source_ids[row])], int(self.lines[row])

    @staticmethod
    def single_file(path: str | os.PathLike, categorical, numeric, lines=None) -> Frame:
        n = len(next(iter({**categorical, **numeric}.values())))
        lines = np.arange(1, n + 1, dtype=np.int64) if lines is None else np.asarray(lines, np.int64)
        return Frame(dict(categorical), dict(numeric), [os.fspath(path)], np.zeros(n, np.int16), lines)


def file_parts(frame: Frame) -> list[np.ndarray]:
    """The row indices of each source file of a frame whose rows are in file order."""
    bounds = np.concatenate([[0], np.cumsum(np.bincount(frame.source_ids, minlength=len(frame.sources)))])
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def concat_frames(frames: Sequence[Frame], *, consume: bool = False) -> tuple[Frame, list[np.ndarray]]:
    """Stacks frames with the same columns; returns the frame and each part's row indices.

    ``consume=True`` empties the given frames column by column as it goes, so that at
    most one column is held twice (the frames must not be used afterwards).
    """
    if any([*f.categorical, *f.numeric] != [*frames[0].categorical, *frames[0].numeric] for f in frames):
        raise ValueError("frames to concatenate have different columns")
    sources = list(dict.fromkeys(s for f in frames for s in f.sources))
    source_ids = [np.array([sources.index(s) for s in f.sources], np.int16)[f.source_ids] for f in frames]
    bounds = np.cumsum([0] + [f.num_rows for f in frames])
    take = (lambda d, k: d.pop(k)) if consume else (lambda d, k: d[k])
    categorical = {k: concat_factors([take(f.categorical, k) for f in frames]) for k in list(frames[0].categorical)}
    numeric = {k: np.concatenate([take(f.numeric, k) for f in frames]) for k in list(frames[0].numeric)}
    frame = Frame(categorical, numeric, sources, np.concatenate(source_ids), np.concatenate([f.lines for f in frames]))
    return frame, [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
