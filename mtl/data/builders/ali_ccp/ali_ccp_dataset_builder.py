"""Ali-CCP as a TFDS dataset (``array_record``, no TensorFlow needed); manual download only.

Configs, one per public preprocessed format (see :mod:`mtl.data.formats.ali_ccp`):

* ``torch_rechub``: splits train / validation / test from
  ``ali_ccp_{train,val,test}.csv`` (or the ``*_sample.csv`` files);
* ``paddlerec``: splits train / test from ``train/*.txt`` and ``test/*.txt``,
  or ``train.txt`` / ``test.txt`` (or ``train_small.txt`` / ``test_small.txt``).

Rows are raw: sparse field ids as strings, dense values (torch-rechub) or
per-field id counts (PaddleRec) and the ``click`` / ``conversion`` labels as numbers.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from mtl.data import ali_ccp
from mtl.data.builders.columnar import ColumnarBuilder, ColumnarConfig, candidate_dirs
from mtl.data.frame import concat_frames


class AliCcp(ColumnarBuilder):
    """Ali-CCP (Alibaba Click and Conversion Prediction), the ESMM dataset."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: torch-rechub CSV and PaddleRec ESMM formats."}
    BUILDER_CONFIGS = [
        ColumnarConfig(
            name=fmt,
            description=f"Ali-CCP in {fmt} format",
            categorical_columns=ali_ccp.COLUMNS[fmt][0],
            numeric_columns=ali_ccp.COLUMNS[fmt][1],
        )
        for fmt in ("torch_rechub", "paddlerec")
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Ali-CCP is distributed only by Alibaba Tianchi (https://tianchi.aliyun.com/dataset/408),
    behind a login and its research licence. Download it there and preprocess it with
    torch-rechub (examples/ranking/data/ali-ccp: ali_ccp_train.csv, ali_ccp_val.csv,
    ali_ccp_test.csv) for the `torch_rechub` config, or with PaddleRec's ESMM scripts
    (train/*.txt and test/*.txt) for the `paddlerec` config. Put the files in the manual
    folder (tfds.download.DownloadConfig(manual_dir=...)), its ali_ccp/ subfolder, or a
    folder one level below either. The small public samples
    (ali_ccp_*_sample.csv, train_small.txt / test_small.txt) are accepted too.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=self._features(),
            homepage="https://tianchi.aliyun.com/dataset/408",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        folder = dl_manager.manual_dir
        fmt = self.builder_config.name
        finder = ali_ccp.torch_rechub_files_in if fmt == "torch_rechub" else ali_ccp.paddlerec_files_in
        files = None
        for sample in (False, True):  # full files anywhere first, then the samples
            for candidate in candidate_dirs(folder, ali_ccp.DATASET):
                files = files or finder(candidate, sample)
        if files is None:
            raise FileNotFoundError(f"no Ali-CCP {fmt} files in {folder}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        read = ali_ccp.READERS[fmt]
        out = {}
        for split, paths in files.items():
            paths = paths if isinstance(paths, list) else [paths]
            frame = read(paths[0]) if len(paths) == 1 else concat_frames([read(p) for p in paths])[0]
            out[split] = self._generate_examples(frame)
        return out
