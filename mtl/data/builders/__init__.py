"""TFDS dataset builders (``array_record``, usable without TensorFlow; :mod:`.columnar`) over the loaders'
raw readers; no loader imports them. Use: ``docs/data.md``, *TFDS builders*."""
