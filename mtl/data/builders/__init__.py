"""TFDS dataset builders (``array_record``, usable without TensorFlow; :mod:`.columnar`), imported by the
loaders only for ``reader="tfds"``. Use: ``docs/data.md``, *TFDS builders*."""
