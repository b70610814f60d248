"""Running means of the train step outputs over an epoch.

Ours rather than ``clu.metrics.Average``: clu is not a dependency of the
project, and the sums must live in the checkpoint's JSON meta (a partial
epoch resumes with them) and be accumulated on the host in float64, counting
only the steps that were applied (not padding, not a stopped seed, not a
skipped non-finite step).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class StepMeans:
    """Sums and counts of per-step outputs, kept in a plain JSON dict.

    ``state`` is that dict (updated in place, so it can sit in a checkpoint's
    meta): ``"_count"`` (steps averaged), ``"_skipped"`` (counted steps whose
    outputs were not finite) and one list of float64 sums per output.
    """

    def __init__(self, state: dict | None = None):
        self.state = {} if state is None else state

    def add(self, outputs: Mapping[str, np.ndarray], counted: np.ndarray, finite: np.ndarray) -> None:
        """Adds the steps of one call (leading step axis) that are ``counted & finite``."""
        ok = counted & finite
        self.state["_count"] = self.state.get("_count", 0) + int(ok.sum())
        self.state["_skipped"] = self.state.get("_skipped", 0) + int((counted & ~ok).sum())
        for k, v in outputs.items():
            self.state[k] = (np.asarray(self.state.get(k, 0.0)) + v[ok].sum(axis=0)).tolist()

    @property
    def count(self) -> int:
        return self.state.get("_count", 0)

    @property
    def skipped(self) -> int:
        return self.state.get("_skipped", 0)

    def means(self) -> dict[str, np.ndarray]:
        """Each output's mean over the averaged steps (zeros when none was averaged)."""
        count = max(self.count, 1)
        return {k: np.asarray(v) / count for k, v in self.state.items() if not k.startswith("_")}
