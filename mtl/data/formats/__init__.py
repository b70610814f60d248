"""File formats of the public datasets: names, layouts and raw readers.

One module per dataset holds what both its loader (:mod:`mtl.data.<dataset>`) and
its TFDS builder (:mod:`mtl.data.builders.<dataset>`) need: the column names, the
file names and layouts, and the function that parses one raw file into a
:class:`~mtl.data.frame.Frame`. Loaders and builders import these modules, never
each other.
"""
