from mtl.data.builders.aliexpress.aliexpress_dataset_builder import AliExpress as AliExpress
