"""TFDS dataset builders (``array_record`` format, usable without TensorFlow).

Importing a builder module imports ``tensorflow_datasets`` and registers the
builder under its TFDS name; the loaders in :mod:`mtl.data` import them only when
asked for ``reader="tfds"``. Build one directly with::

    from mtl.data.builders.columnar import prepare, read_frame
    from mtl.data.builders.census_income_kdd import CensusIncomeKdd

    builder = prepare(CensusIncomeKdd, data_dir="/tmp/tfds", manual_dir="/data/census_income_kdd")
    source = builder.as_data_source("test")      # random access, one record at a time
    frame = read_frame(builder, "test")          # all columns at once, cached (memory-mapped)

Instantiate builder classes directly: ``tfds.builder(name)`` and ``tfds.list_builders()``
consult the community registry, which needs TensorFlow.
"""
