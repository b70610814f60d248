"""Raw columns of one or more files, before any split, vocabulary or scaling.

A :class:`Frame` is what every reader produces and what the cache and the TFDS
builders store: categorical columns as :class:`Factor` s (integer codes into a
sorted array of distinct string values) and numeric columns as float64 arrays
with NaN for missing values. Each row remembers its source file and 1-based line
number so that later checks can say where a bad value came from.

Turning a frame into model inputs (train-only vocabularies, standardisation,
labels, splits) is :mod:`mtl.data.preprocess`'s job.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np

_FORMAT_VERSION = 1


@dataclasses.dataclass
class Factor:
    """A categorical column: ``values[codes]`` are the row values.

    ``values`` is sorted and distinct, so the coding does not depend on row order.
    """

    codes: np.ndarray  # (N,) int32
    values: np.ndarray  # (V,) str

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def strings(self) -> np.ndarray:
        return self.values[self.codes]

    def take(self, idx: np.ndarray) -> "Factor":
        return Factor(self.codes[idx], self.values)


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


@dataclasses.dataclass
class Frame:
    """Columns of one or more source files.

    Attributes:
      categorical: name -> :class:`Factor`, in column order.
      numeric: name -> (N,) float64, NaN where missing, in column order; values are
        rounded to float32 precision (what models see and what the TFDS builders
        store), so every reader of the same file gives the same numbers.
      sources: the source files; ``source_ids[i]`` indexes it for row ``i``.
      lines: (N,) 1-based line number of each row in its source file.
    """

    categorical: dict[str, Factor]
    numeric: dict[str, np.ndarray]
    sources: list[str]
    source_ids: np.ndarray  # (N,) int16
    lines: np.ndarray  # (N,) int64

    def __post_init__(self):
        n = len(self.lines)
        for name, f in self.categorical.items():
            if len(f) != n:
                raise ValueError(f"categorical column {name!r} has {len(f)} rows, expected {n}")
        for name, a in self.numeric.items():
            if a.shape != (n,):
                raise ValueError(f"numeric column {name!r} has shape {a.shape}, expected ({n},)")
            # float32 precision: what models see, and what the TFDS builders store
            self.numeric[name] = np.asarray(a, np.float32).astype(np.float64)

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


def concat_frames(frames: Sequence[Frame]) -> tuple[Frame, list[np.ndarray]]:
    """Stacks frames with the same columns; returns the frame and each part's row indices."""
    if not frames:
        raise ValueError("nothing to concatenate")
    names = frames[0].column_names()
    for f in frames[1:]:
        if f.column_names() != names:
            raise ValueError("frames to concatenate have different columns")
    categorical = {}
    for name in frames[0].categorical:
        parts = [f.categorical[name] for f in frames]
        values = np.unique(np.concatenate([p.values for p in parts]))
        codes = [np.searchsorted(values, p.values).astype(np.int32)[p.codes] for p in parts]
        categorical[name] = Factor(np.concatenate(codes), values)
    numeric = {name: np.concatenate([f.numeric[name] for f in frames]) for name in frames[0].numeric}
    sources: list[str] = []
    source_ids = []
    for f in frames:
        remap = np.array([_index_of(sources, s) for s in f.sources], np.int16)
        source_ids.append(remap[f.source_ids])
    lines = np.concatenate([f.lines for f in frames])
    bounds = np.cumsum([0] + [f.num_rows for f in frames])
    parts = [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    return Frame(categorical, numeric, sources, np.concatenate(source_ids), lines), parts


def _index_of(items: list[str], item: str) -> int:
    if item not in items:
        items.append(item)
    return items.index(item)


def save_frame(frame: Frame, path: str | os.PathLike) -> None:
    """Writes a frame as one uncompressed ``.npz`` (atomically: temp file, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "format_version": np.array(_FORMAT_VERSION),
        "categorical_names": np.array(list(frame.categorical), dtype=str),
        "numeric_names": np.array(list(frame.numeric), dtype=str),
        "sources": np.array(frame.sources, dtype=str),
        "source_ids": frame.source_ids,
        "lines": frame.lines,
    }
    for i, f in enumerate(frame.categorical.values()):
        arrays[f"cat{i}_codes"] = f.codes
        arrays[f"cat{i}_values"] = f.values
    for i, a in enumerate(frame.numeric.values()):
        arrays[f"num{i}"] = a
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_frame(path: str | os.PathLike) -> Frame:
    """Reads a frame written by :func:`save_frame`."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format_version"]) != _FORMAT_VERSION:
            raise ValueError(f"{path}: cache format {int(z['format_version'])}, expected {_FORMAT_VERSION}")
        cat_names = [str(s) for s in z["categorical_names"]]
        num_names = [str(s) for s in z["numeric_names"]]
        categorical = {n: Factor(z[f"cat{i}_codes"], z[f"cat{i}_values"]) for i, n in enumerate(cat_names)}
        numeric = {n: z[f"num{i}"] for i, n in enumerate(num_names)}
        return Frame(categorical, numeric, [str(s) for s in z["sources"]], z["source_ids"], z["lines"])


def cached(path: pathlib.Path, build) -> Frame:
    """Loads the frame cached at ``path``, or builds it with ``build()`` and caches it."""
    if path.is_file():
        try:
            return load_frame(path)
        except (ValueError, OSError, KeyError):
            pass  # stale or partial cache: rebuild
    frame = build()
    save_frame(frame, path)
    return frame
