"""TFDS builder for the AliExpress multi-task data; see :mod:`.aliexpress_dataset_builder`."""

from mtl.data.builders.aliexpress.aliexpress_dataset_builder import AliExpress as AliExpress
