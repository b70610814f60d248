"""The TFDS builder base for tabular rows (``array_record``, usable without TensorFlow: a row is its index, line
and two vectors, strings and float32) and :func:`read_frame`, the batched read-back into a
:class:`~mtl.data.frame.Frame`: ``docs/data.md``, *TFDS builders*."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow_datasets as tfds

from mtl.data.frame import Frame, concat_frames
from mtl.data.reader import merge_chunks


@dataclasses.dataclass
class ColumnarConfig(tfds.core.BuilderConfig):
    """A builder config that names the columns of the two row vectors."""

    categorical_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ()


class ColumnarBuilder(tfds.core.GeneratorBasedBuilder):
    """Rows as ``{row, line, categorical[C] (str), numeric[D] (float32)}``, ``array_record`` by default.

    Subclasses set ``BUILDER_CONFIGS``, ``HOMEPAGE``, ``MANUAL_DOWNLOAD_INSTRUCTIONS``,
    ``files(manual folder or None, dl_manager) -> {split: [paths]} or None`` and ``read(path) -> Frame``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: raw rows as two vectors (strings, float32)."}
    HOMEPAGE = ""

    def __init__(self, *, file_format: str | None = None, **kwargs):
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        cat, num = self.builder_config.categorical_columns, self.builder_config.numeric_columns
        features = tfds.features.FeaturesDict({
            "row": tfds.features.Scalar(np.int64, doc="0-based row index in the split's source files"),
            "line": tfds.features.Scalar(np.int64, doc="1-based line of the row in its source file (or minus its "
                                                       "record number: mtl.data.reader._lines)"),
            "categorical": tfds.features.Tensor(shape=(len(cat),), dtype=np.object_, doc="strings: " + ", ".join(cat)),
            "numeric": tfds.features.Tensor(shape=(len(num),), dtype=np.float32,
                                            doc="numbers (NaN = missing): " + ", ".join(num)),
        })  # fmt: skip
        return self.dataset_info_from_configs(features=features, homepage=self.HOMEPAGE)

    def _split_generators(self, dl_manager):
        try:
            manual = pathlib.Path(dl_manager.manual_dir)
        except AssertionError:  # no manual folder: files() may download
            manual = None
        found = self.files(manual, dl_manager)
        if found is None:
            raise FileNotFoundError(f"no {self.name} {self.builder_config.name} files in {manual}.\n"
                                    f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")  # fmt: skip
        return {split: self._generate_examples(concat_frames([self.read(p) for p in paths])[0])
                for split, paths in found.items()}  # fmt: skip

    def _generate_examples(self, frame: Frame):
        cat_names, num_names = self.builder_config.categorical_columns, self.builder_config.numeric_columns
        missing = [c for c in cat_names if c not in frame.categorical]
        missing += [c for c in num_names if c not in frame.numeric]
        if missing:
            raise ValueError(f"{self.name}: the parsed files lack columns {missing}")
        cats = np.stack([frame.categorical[c].strings().astype(object) for c in cat_names], axis=1)
        nums = np.stack([frame.numeric[c] for c in num_names], axis=1).astype(np.float32)
        for i in range(frame.num_rows):
            yield i, {"row": i, "line": int(frame.lines[i]), "categorical": cats[i], "numeric": nums[i]}


def prepare(builder_cls, *, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None,
            config: str | None = None) -> ColumnarBuilder:  # fmt: skip
    """Instantiates a builder and runs ``download_and_prepare`` (a no-op when already built)."""
    builder = builder_cls(data_dir=os.fspath(data_dir), **({} if config is None else {"config": config}))
    manual = None if manual_dir is None else os.fspath(manual_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return builder


def read_frame(builder: ColumnarBuilder, split: str, *, batch_size: int = 8192) -> Frame:
    """Reads a prepared split into columns (records ``batch_size`` at a time, in file order)."""
    source = builder.as_data_source(split)
    records = [r for start in range(0, len(source), batch_size)
               for r in source.__getitems__(list(range(start, min(len(source), start + batch_size))))]  # fmt: skip
    records.sort(key=lambda r: int(r["row"]))  # file order
    cfg = builder.builder_config
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    categorical = {name: merge_chunks([pc.dictionary_encode(pa.array([text(r["categorical"][j]) for r in records],
                                                                     pa.string()))], strip=False)
                   for j, name in enumerate(cfg.categorical_columns)}  # fmt: skip
    nums = np.array([r["numeric"] for r in records], np.float32).reshape(len(records), len(cfg.numeric_columns))
    numeric = {name: nums[:, j] for j, name in enumerate(cfg.numeric_columns)}
    lines = np.array([r["line"] for r in records], np.int64)
    return Frame.single_file(f"{builder.name} split {split!r} in {builder.data_dir}", categorical, numeric, lines=lines)
