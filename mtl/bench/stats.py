"""The paired tests over seeds that the tables mark (a row against equal weighting, single-task, the front).

Two cells are compared seed by seed (the same seed gives the same data order and
initialisation family), never as two independent samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtl.bench.results import NAN, CellResults, MetricSpec

ALPHA = 0.05
MIN_PAIRS = 3


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided paired t-test of ``mean(a − b) = 0``: ``(t, p)`` with n − 1 degrees of freedom.

    Same statistic as ``scipy.stats.ttest_rel``; when every difference is the
    same, t is ±inf and p = 0 (or t = 0, p = 1 when they are all 0). NaN with
    fewer than 2 pairs.
    """
    from scipy import stats

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = d.size
    if n < 2 or not np.all(np.isfinite(d)):
        return NAN, NAN
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    if sd == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    return float(t), float(2.0 * stats.t.sf(abs(t), n - 1))


@dataclass(frozen=True)
class Comparison:
    """``cell`` against equal weighting: mark +1 (significantly better), −1 (worse) or 0."""

    mark: int
    p: float
    t: float
    n_pairs: int


def compare_to_ew(cell: CellResults, ew_cell: CellResults | None, spec: MetricSpec, split: str = "test", *,
                  alpha: float = ALPHA, min_pairs: int = MIN_PAIRS) -> Comparison:
    """Paired t-test over the seeds both cells finished (paired by seed), two-sided at ``alpha``.

    No mark (0) for the EW cell itself, with fewer than ``min_pairs`` common
    seeds, or when p >= alpha; otherwise +1 / −1 for better / worse in the
    metric's direction.
    """
    if ew_cell is None or ew_cell is cell:
        return Comparison(0, NAN, NAN, 0)
    common = sorted(set(cell.seeds) & set(ew_cell.seeds))
    a = cell.per_seed(spec, split)
    b = ew_cell.per_seed(spec, split)
    common = [s for s in common if math.isfinite(a[s]) and math.isfinite(b[s])]
    if len(common) < min_pairs:
        return Comparison(0, NAN, NAN, len(common))
    t, p = paired_t_test([a[s] for s in common], [b[s] for s in common])
    mark = 0
    if p < alpha:
        mark = int(np.sign(t)) * spec.sign
    return Comparison(mark, p, t, len(common))
