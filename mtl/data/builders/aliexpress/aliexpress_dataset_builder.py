"""AliExpress (MTReclib format) as a TFDS dataset, manual download only (:mod:`mtl.data.aliexpress`): one
config per country (the manual folder, or its ``aliexpress/`` subfolder, holds
``AliExpress_<country>/{train,test}.csv`` or is that folder) and ``sample`` (the public sample)."""

from mtl.data import aliexpress, paths
from mtl.data.builders.columnar import ColumnarBuilder, ColumnarConfig


class AliExpress(ColumnarBuilder):
    """AliExpress search-session data with click and conversion labels (MTReclib / AITM)."""

    BUILDER_CONFIGS = [ColumnarConfig(name=name, description=f"AliExpress {name}",
                                      categorical_columns=aliexpress.COLUMNS[0], numeric_columns=aliexpress.COLUMNS[1])
                       for name in aliexpress.COUNTRIES + ("sample",)]  # fmt: skip
    HOMEPAGE = "https://tianchi.aliyun.com/dataset/74690"
    MANUAL_DOWNLOAD_INSTRUCTIONS = aliexpress.HOW_TO_GET

    def files(self, manual, dl_manager):
        name = self.builder_config.name
        for candidate in paths.candidate_dirs(manual, aliexpress.DATASET):
            if found := aliexpress.files_in(candidate, "NL" if name == "sample" else name, name == "sample"):
                return {split: [path] for split, path in found.items()}
        return None

    def read(self, path):
        return aliexpress.read_aliexpress_files([path])
