"""AliExpress (MTReclib format) as a TFDS dataset (``array_record``); manual download only.

One config per country (``NL``, ``ES``, ``FR``, ``US``, ``RU``: the manual folder,
or its ``aliexpress/`` subfolder, holds ``AliExpress_<country>/train.csv`` and
``test.csv``, or is that folder)
and ``sample`` (``aliexpress_{train,test}_sample.csv``). Splits ``train`` and
``test``; rows are raw (``search_id`` and the 16 categorical columns as strings,
the 63 numerical columns and the ``click`` / ``conversion`` labels as numbers).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from mtl.data import aliexpress
from mtl.data.builders.columnar import ColumnarBuilder, ColumnarConfig, candidate_dirs


class AliExpress(ColumnarBuilder):
    """AliExpress search-session data with click and conversion labels (MTReclib / AITM)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: MTReclib CSV format."}
    BUILDER_CONFIGS = [
        ColumnarConfig(
            name=name,
            description=f"AliExpress {name}",
            categorical_columns=aliexpress.COLUMNS[0],
            numeric_columns=aliexpress.COLUMNS[1],
        )
        for name in aliexpress.COUNTRIES + ("sample",)
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    The AliExpress dataset is distributed only by Alibaba Tianchi
    (https://tianchi.aliyun.com/dataset/74690), behind a login and its research licence.
    Download AliExpress_NL.zip (or ES, FR, US, RU) and unzip it into the manual folder,
    giving AliExpress_NL/train.csv and AliExpress_NL/test.csv. The `sample` config reads
    torch-rechub's aliexpress_train_sample.csv / aliexpress_test_sample.csv instead.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=self._features(),
            homepage="https://tianchi.aliyun.com/dataset/74690",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        folder = dl_manager.manual_dir
        name = self.builder_config.name
        sample = name == "sample"
        files = None
        for candidate in candidate_dirs(folder, aliexpress.DATASET):
            files = files or aliexpress.files_in(candidate, "NL" if sample else name, sample)
        if files is None:
            raise FileNotFoundError(f"no AliExpress {name} files in {folder}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return {split: self._generate_examples(aliexpress.read_aliexpress_file(p)) for split, p in files.items()}
