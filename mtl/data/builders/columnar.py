"""A TFDS builder base for tabular rows, and the columnar read-back.

tensorflow-datasets 4.9 builds and reads datasets WITHOUT TensorFlow only with
the ``array_record`` file format, through ``builder.as_data_source`` (random
access); ``tfds.load`` / ``as_dataset`` need TensorFlow, and the ``parquet``
format silently dropped rows in tests here. So every builder here:

* writes ``array_record`` (the default of :class:`ColumnarBuilder`);
* stores a row as four features: ``row`` (0-based index in the split: TFDS
  shuffles records on write, this restores file order), ``line`` (1-based line
  in the source file, for error messages), ``categorical``
  (a vector of strings) and ``numeric`` (a vector of float32). Two vectors per
  row serialise about 6x faster and read back about 8x faster than one named
  feature per column (measured on Census-Income: 4 s vs 25 s to write, 2.6 s vs
  21 s to read 99,762 rows). Column names are in each feature's ``doc`` and in
  ``CATEGORICAL_COLUMNS`` / ``NUMERIC_COLUMNS`` of the builder (config).

Training never reads records one at a time: :func:`read_frame` reads a split once
with batched ``__getitems__`` calls into a columnar :class:`~mtl.data.frame.Frame`
and caches it as ``<split>.columns/`` (``.npy`` columns, :mod:`mtl.data.cache`)
beside the ``array_record`` files, so later loads memory-map the columns.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtl.data.frame import Frame, cached, factorize

_ROW_DOC = "0-based row index in the split's source files (records are shuffled on write; this restores order)"
_LINE_DOC = "1-based line number of the row in its source file"


@dataclasses.dataclass
class ColumnarConfig(tfds.core.BuilderConfig):
    """A builder config that names the columns of the two row vectors."""

    categorical_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()


class ColumnarBuilder(tfds.core.GeneratorBasedBuilder):
    """Rows as ``{row, categorical[C] (str), numeric[D] (float32)}``; ``array_record`` by default.

    Subclasses set ``BUILDER_CONFIGS`` of :class:`ColumnarConfig` and implement
    ``_split_generators`` returning ``{split: self._generate_examples(frame)}``.
    """

    def __init__(self, *, file_format: str | None = None, **kwargs):
        super().__init__(file_format=file_format or "array_record", **kwargs)

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return tuple(self.builder_config.categorical_columns)

    @property
    def numeric_columns(self) -> tuple[str, ...]:
        return tuple(self.builder_config.numeric_columns)

    def _features(self) -> tfds.features.FeaturesDict:
        cat, num = self.categorical_columns, self.numeric_columns
        return tfds.features.FeaturesDict(
            {
                "row": tfds.features.Scalar(np.int64, doc=_ROW_DOC),
                "line": tfds.features.Scalar(np.int64, doc=_LINE_DOC),
                "categorical": tfds.features.Tensor(
                    shape=(len(cat),), dtype=np.object_, doc="string columns: " + ", ".join(cat)
                ),
                "numeric": tfds.features.Tensor(
                    shape=(len(num),), dtype=np.float32, doc="numeric columns (NaN = missing): " + ", ".join(num)
                ),
            }
        )

    def _generate_examples(self, frame: Frame) -> Iterator[tuple[int, dict]]:
        cat_names, num_names = self.categorical_columns, self.numeric_columns
        missing = [c for c in cat_names if c not in frame.categorical]
        missing += [c for c in num_names if c not in frame.numeric]
        if missing:
            raise ValueError(f"{self.name}: the parsed files lack columns {missing}")
        n = frame.num_rows
        cats = np.empty((n, len(cat_names)), dtype=object)
        for j, name in enumerate(cat_names):
            cats[:, j] = frame.categorical[name].strings()
        nums = np.zeros((n, len(num_names)), np.float32)
        for j, name in enumerate(num_names):
            nums[:, j] = frame.numeric[name]
        lines = frame.lines
        for i in range(n):
            yield i, {"row": i, "line": int(lines[i]), "categorical": cats[i], "numeric": nums[i]}


def candidate_dirs(manual_dir: pathlib.Path, folder: str) -> list[pathlib.Path]:
    """Where a builder looks for its files: the manual folder, ``<manual>/<folder>``, and their subfolders."""
    manual_dir = pathlib.Path(manual_dir)
    tops = [d for d in (manual_dir, manual_dir / folder) if d.is_dir()]
    return tops + [sub for d in tops for sub in sorted(d.iterdir()) if sub.is_dir()]


def prepare(
    builder_cls,
    *,
    data_dir: str | os.PathLike,
    manual_dir: str | os.PathLike | None = None,
    config: str | None = None,
) -> ColumnarBuilder:
    """Instantiates a builder and runs ``download_and_prepare`` (a no-op when already built)."""
    kwargs = {"data_dir": os.fspath(data_dir)}
    if config is not None:
        kwargs["config"] = config
    builder = builder_cls(**kwargs)
    download_config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else os.fspath(manual_dir))
    builder.download_and_prepare(download_config=download_config)
    return builder


def read_frame(builder: ColumnarBuilder, split: str, *, batch_size: int = 8192, use_cache: bool = True) -> Frame:
    """Reads a prepared split into columns once (batched), cached beside the array_record files."""

    def build() -> Frame:
        return _read_split(builder, split, batch_size)

    if not use_cache:
        return build()
    folder = pathlib.Path(builder.data_dir)
    sources = sorted(p for p in folder.glob(f"*-{split}.array_record*") if p.is_file())
    return cached(folder, name=f"{split}.columns", sources=sources,
                  args={"builder": builder.name, "version": str(builder.version), "split": split}, build=build)


def _read_split(builder: ColumnarBuilder, split: str, batch_size: int) -> Frame:
    source = builder.as_data_source(split)
    n = len(source)
    cat_names, num_names = builder.categorical_columns, builder.numeric_columns
    rows = np.empty(n, np.int64)
    lines = np.empty(n, np.int64)
    cats = np.empty((n, len(cat_names)), dtype=object)
    nums = np.empty((n, len(num_names)), np.float32)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        records = source.__getitems__(list(range(start, stop)))
        for k, rec in enumerate(records):
            rows[start + k] = rec["row"]
            lines[start + k] = rec["line"]
            cats[start + k] = rec["categorical"]
            nums[start + k] = rec["numeric"]
    order = np.argsort(rows, kind="stable")
    cats, nums = cats[order], nums[order]
    categorical = {name: factorize([_text(v) for v in cats[:, j]]) for j, name in enumerate(cat_names)}
    numeric = {name: nums[:, j].astype(np.float64) for j, name in enumerate(num_names)}
    source_name = f"{builder.name} split {split!r} in {builder.data_dir}"
    return Frame.single_file(source_name, categorical, numeric, lines=lines[order])


def _text(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)
