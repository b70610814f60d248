from mtl.data.builders.ali_ccp.ali_ccp_dataset_builder import AliCcp as AliCcp
