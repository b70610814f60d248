"""Ali-CCP as a TFDS dataset, manual download only (:mod:`mtl.data.ali_ccp`): configs ``torch_rechub``
(splits train / validation / test) and ``paddlerec`` (train / test), from the full files anywhere in the
manual folder first, then the public samples."""

from mtl.data import ali_ccp, paths
from mtl.data.builders.columnar import ColumnarBuilder, ColumnarConfig


class AliCcp(ColumnarBuilder):
    """Ali-CCP (Alibaba Click and Conversion Prediction), the ESMM dataset."""

    BUILDER_CONFIGS = [ColumnarConfig(name=fmt, description=f"Ali-CCP in {fmt} format",
                                      categorical_columns=ali_ccp.COLUMNS[fmt][0],
                                      numeric_columns=ali_ccp.COLUMNS[fmt][1])
                       for fmt in ("torch_rechub", "paddlerec")]  # fmt: skip
    HOMEPAGE = "https://tianchi.aliyun.com/dataset/408"
    MANUAL_DOWNLOAD_INSTRUCTIONS = ali_ccp.HOW_TO_GET

    def files(self, manual, dl_manager):
        fmt = self.builder_config.name
        finder = ali_ccp.torch_rechub_files_in if fmt == "torch_rechub" else ali_ccp.paddlerec_files_in
        for sample in (False, True):
            for candidate in paths.candidate_dirs(manual, ali_ccp.DATASET):
                if found := finder(candidate, sample):
                    return {split: p if isinstance(p, list) else [p] for split, p in found.items()}
        return None

    def read(self, path):
        return ali_ccp.READERS[self.builder_config.name](path)
