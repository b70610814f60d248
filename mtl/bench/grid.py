"""What a benchmark is: groups of cells, each cell an ordinary ``mtl-train`` run.

A benchmark file ``experiments/benchmarks/<name>.py`` defines
``get_bench(smoke: bool) -> Benchmark``: groups of :class:`CellSpec`. Every cell names a config file (with its
argument) and command-line style overrides; ``mtl-bench`` resolves them exactly
as ``mtl-train`` would and trains the cell in ``WORKDIR/<group>/<cell>/``, so a
rerun skips finished cells and resumes interrupted ones. Each group gets its
own table (Δm against the group's single-task cell, significance against the
same model's equal weighting).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One declared cell, to be trained as one run directory: ``config`` is ``path[:arg]`` of a
    config file; ``overrides`` are ``{"balancer.name": "pcgrad", ...}`` as on the command line
    (strings or values). What the cell's runs gave is read back by :mod:`mtl.bench.results`."""

    name: str
    config: str
    overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark: a title, ``groups`` of cells (one table each), the seeds every
    cell trains side by side, overrides shared by every cell, and an optional
    ``report(workdir, outdir, bench, *, replace_tables)`` for analysis beyond the
    generic tables (it must not replace its own outputs by ones with fewer runs
    unless ``replace_tables``)."""

    title: str
    groups: Mapping[str, Sequence[CellSpec]]
    seeds: int | Sequence[int] = 5
    common: Mapping[str, object] = dataclasses.field(default_factory=dict)
    report: Callable | None = None
    description: str = ""

    def cells(self):
        for group, cells in self.groups.items():
            for cell in cells:
                yield group, cell


def grid(config: str, models: Sequence, balancers: Sequence, *, stl: str | None = "single_task",
         model_config: Callable[[str], str] | None = None, extra: Mapping[str, object] | None = None,
         gradient_diagnostics: bool = True) -> list[CellSpec]:
    """The cells of ``models × balancers`` plus the single-task cell.

    Args:
      config: the config spec every cell starts from (``path[:arg]``).
      models: model names, or ``(label, name, hparams)`` for sized variants.
      balancers: balancer names, or ``(label, name, hparams)``.
      stl: the single-task model (trained with ``ew``) or ``None``.
      model_config: ``name -> config spec`` when a config selects model sizes by
        argument (e.g. ``census_income.py:group1,ple``).
      extra: overrides for every cell.
      gradient_diagnostics: record per-task gradient norms and cosines
        (``diagnostics=epoch``) for the gradient-based methods, which compute
        per-task gradients anyway (loss-weighting methods would pay T extra
        pullbacks, which would distort their step time).
    """
    import mtl.balancers as mb

    def entry(x):
        return (x, x, {}) if isinstance(x, str) else tuple(x)

    spec = model_config or (lambda name: config)
    cells = []
    if stl:
        cells.append(CellSpec(f"{stl}__ew", spec(stl), {"model.name": stl, "balancer.name": "ew", **(extra or {})}))
    pairs = itertools.product(map(entry, models), map(entry, balancers))
    for (m_label, m_name, m_hp), (b_label, b_name, b_hp) in pairs:
        overrides = {"model.name": m_name, "balancer.name": b_name, **(extra or {})}
        overrides.update({f"model.hparams.{k}": v for k, v in m_hp.items()})
        overrides.update({f"balancer.hparams.{k}": v for k, v in b_hp.items()})
        if m_label != m_name or b_label != b_name:
            overrides["label"] = "/".join(x for x, n in ((m_label, m_name), (b_label, b_name)) if x != n)
        if gradient_diagnostics and mb.get(b_name, **b_hp).needs_grads:
            overrides["diagnostics"] = "epoch"
        cells.append(CellSpec(f"{m_label}__{b_label}", spec(m_name), overrides))
    return cells
