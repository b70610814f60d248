"""UCI Census-Income (KDD) as a TFDS dataset (``array_record``, no TensorFlow needed).

Splits ``train`` (``census-income.data``, 199,523 rows) and ``test``
(``census-income.test``, 99,762 rows): the raw rows, all 42 columns, nominal
values stripped of their leading space. Task labels are defined by the loader
(:mod:`mtl.data.census_income`), not here; the format is :mod:`mtl.data.formats.census_income`.

Sources, in order of preference:

1. the manual folder (``DownloadConfig(manual_dir=...)``) or its
   ``census_income_kdd/`` subfolder, holding ``census-income.test(.gz)`` and
   optionally ``census-income.data(.gz)``: only
   the splits whose file is there are built (offline use);
2. otherwise both files are downloaded from UCI (:data:`URLS`).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from mtl.data import census_income as census
from mtl.data.builders.columnar import ColumnarBuilder, ColumnarConfig, candidate_dirs

URLS = {
    "train": census.URL_BASE + census.TRAIN_FILE + ".gz",
    "test": census.URL_BASE + census.TEST_FILE + ".gz",
}
CATEGORICAL_COLUMNS, NUMERIC_COLUMNS = census.RAW_COLUMNS


class CensusIncomeKdd(ColumnarBuilder):
    """UCI Census-Income (KDD), the MMoE benchmark: raw rows, 34 string + 8 numeric columns."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: raw rows as two vectors (strings, float32)."}
    BUILDER_CONFIGS = [
        ColumnarConfig(
            name="raw",
            description="All 42 columns; nominal ones (with year and labels) as strings.",
            categorical_columns=CATEGORICAL_COLUMNS,
            numeric_columns=NUMERIC_COLUMNS,
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Optional (the files are downloaded from UCI otherwise): put census-income.test.gz
    and, for the papers' protocol, census-income.data.gz (gzip or plain) in the manual
    folder. Get them from {census.URL_BASE} (or census.tar.gz there, or
    https://archive.ics.uci.edu/static/public/117/census+income+kdd.zip).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=self._features(),
            homepage="https://archive.ics.uci.edu/dataset/117/census+income+kdd",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        files = _manual_files(dl_manager)
        if files is None:
            files = dl_manager.download(URLS)
        return {split: self._generate_examples(census.read_census_file(path)) for split, path in files.items()}


def _manual_files(dl_manager) -> dict | None:
    try:
        folder = dl_manager.manual_dir
    except AssertionError:  # no manual folder, or it is empty: download instead
        return None
    for candidate in candidate_dirs(folder, census.DATASET):
        train, test = census.files_in(candidate)
        if test is not None:
            return {"test": test} if train is None else {"train": train, "test": test}
    return None


