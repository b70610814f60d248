"""Benchmark grids for ``mtl-bench`` (one file each: ``get_bench(smoke) -> mtl.bench.grid.Benchmark``)."""
