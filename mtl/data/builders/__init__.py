"""TFDS dataset builders (``array_record``, usable without TensorFlow); see :mod:`.columnar`.

Importing a builder module imports ``tensorflow_datasets``; the loaders do so only for
``reader="tfds"``. Instantiate builder classes directly (``tfds.builder(name)`` needs TensorFlow)::

    builder = prepare(CensusIncomeKdd, data_dir="/tmp/tfds", manual_dir="/data/census_income_kdd")
    frame = read_frame(builder, "test")
"""
