"""UCI Census-Income (KDD) as a TFDS dataset, the raw rows of all 42 columns (:mod:`mtl.data.census_income`):
splits ``train`` and ``test`` from the manual folder (or its ``census_income_kdd/`` subfolder; only the
splits whose file is there), else both downloaded from UCI (:data:`URLS`)."""

from mtl.data import census_income as census
from mtl.data import paths
from mtl.data.builders.columnar import ColumnarBuilder, ColumnarConfig

URLS = {"train": census.URL_BASE + census.TRAIN_FILE + ".gz", "test": census.URL_BASE + census.TEST_FILE + ".gz"}


class CensusIncomeKdd(ColumnarBuilder):
    """UCI Census-Income (KDD), the MMoE benchmark: raw rows, 34 string + 8 numeric columns."""

    BUILDER_CONFIGS = [ColumnarConfig(name="raw", description="All 42 columns; nominal ones as strings.",
                                      categorical_columns=census.RAW_COLUMNS[0], numeric_columns=census.RAW_COLUMNS[1])]
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/117/census+income+kdd"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Optional (else downloaded): {census.HOW_TO_GET}"

    def files(self, manual, dl_manager):
        for candidate in paths.candidate_dirs(manual, census.DATASET):
            train, test = census.files_in(candidate)
            if test is not None:
                return {"test": [test]} if train is None else {"train": [train], "test": [test]}
        return {split: [path] for split, path in dl_manager.download(URLS).items()}

    def read(self, path):
        return census.read_census_file(path)
