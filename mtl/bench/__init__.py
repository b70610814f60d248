"""``mtl-bench``: grids of training runs and the tables and figures built from them.

* ``mtl.bench.grid``: what a benchmark declares (``Benchmark``: groups of ``CellSpec``).
* ``mtl.bench.cli``: ``mtl-bench`` (trains the unfinished cells, then renders).
* ``mtl.bench.results``: reads a group's run directories back (``collect`` ->
  ``GroupResults`` of ``CellResults``, and what is ``Missing`` and why).
* ``mtl.bench.report``: ``table.md``, ``table.csv`` and ``table.tex``
  (``write_tables``), with Δm against the single-task cells and paired t-tests
  against equal weighting; ``render`` does both plus the figures.
* ``mtl.bench.figures``: trade-off, validation curves, task weights and
  gradient cosines as PNG files (matplotlib, Agg).
* ``mtl.bench.publish``: whole-file writes, and what replacing a table would lose.
* ``mtl.bench.tuning``: a cell's search grid, its selection on validation, edge marks.
* ``mtl.bench.front``: the scalarization front (``fixed`` weightings), hypervolume,
  beyond / on / inside by paired tests, the front figure.
* ``mtl.bench.summary``: the tuning and front columns and the generated paragraph.
* ``mtl.bench.stats``: the paired t-tests over seeds the tables mark.

Tables and figures are always rebuilt from the saved run directories, never
from a training process's memory.
"""
