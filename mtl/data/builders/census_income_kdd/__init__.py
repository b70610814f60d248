"""TFDS builder for UCI Census-Income (KDD); see :mod:`.census_income_kdd_dataset_builder`."""

from mtl.data.builders.census_income_kdd.census_income_kdd_dataset_builder import CensusIncomeKdd as CensusIncomeKdd
