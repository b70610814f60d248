"""``mtl-bench``: grids of training runs and the tables and figures built from them.

* ``mtl.bench.report``: reads finished run directories (``collect``) and writes
  ``table.md``, ``table.csv`` and ``table.tex`` (``write_tables``), with Δm
  against the single-task cells and paired t-tests against equal weighting;
  ``render`` does both plus the figures (what ``mtl-bench --tables-only`` runs).
* ``mtl.bench.figures``: trade-off, validation curves, task weights and
  gradient cosines as PNG files (matplotlib, Agg).

Tables and figures are always rebuilt from the saved run directories, never
from a training process's memory.
"""
