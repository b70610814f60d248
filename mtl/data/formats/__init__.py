"""Dataset file formats (names, layouts, raw readers), shared by the loaders and the TFDS builders."""
