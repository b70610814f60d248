"""What a benchmark is: groups of cells, each cell an ordinary ``mtl-train`` run.

A benchmark file ``experiments/benchmarks/<name>.py`` defines
``get_bench(smoke: bool) -> Benchmark``: groups of :class:`CellSpec`. Every cell names a config file (with its
argument) and command-line style overrides; ``mtl-bench`` resolves them exactly
as ``mtl-train`` would and trains the cell in ``WORKDIR/<group>/<cell>/``, so a
rerun skips finished cells and resumes interrupted ones. Each group gets its
own table (Δm against the group's single-task cell, significance against the
same model's equal weighting).

A cell may be tuned: ``tune={"learning_rate": (3e-4, 1e-3, 3e-3)}`` trains every
point of the grid with the benchmark's ``tune_seeds`` and reports the point chosen
on validation, retrained with ``seeds`` (:mod:`mtl.bench.tuning`); ``tune_from``
names a tuned cell of the same group whose choice the cell takes without a grid
of its own (e.g. the scalarization front, :func:`front`, at equal weighting's
tuned learning rate).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One declared cell, to be trained as one run directory: ``config`` is ``path[:arg]`` of a
    config file; ``overrides`` are ``{"balancer.name": "pcgrad", ...}`` as on the command line
    (strings or values). What the cell's runs gave is read back by :mod:`mtl.bench.results`.
    ``tune``: ``{config path: values}``, a grid searched on validation; ``tune_from``: the name of
    a tuned cell of the same group whose chosen values this cell is trained at."""

    name: str
    config: str
    overrides: Mapping[str, object] = dataclasses.field(default_factory=dict)
    tune: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    tune_from: str = ""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A benchmark: a title, ``groups`` of cells (one table each), the seeds every
    cell trains side by side, overrides shared by every cell, and an optional
    ``report(workdir, outdir, bench, *, replace_tables)`` for analysis beyond the
    generic tables (it must not replace its own outputs by ones with fewer runs
    unless ``replace_tables``). ``tune_seeds``: the seeds a tuned cell's grid points
    are trained with for the selection (None: ``seeds``, and the chosen point's runs
    are reported as they are); ``tuning``: what was tuned and what was not (the
    tables' header says it); ``metrics``: the columns of each binary task (e.g.
    ``("auc", "gauc")``; default AUC alone; regression tasks keep MSE)."""

    title: str
    groups: Mapping[str, Sequence[CellSpec]]
    seeds: int | Sequence[int] = 5
    common: Mapping[str, object] = dataclasses.field(default_factory=dict)
    report: Callable | None = None
    description: str = ""
    tune_seeds: int | Sequence[int] | None = None
    tuning: str = ""
    metrics: tuple[str, ...] = ()

    def cells(self):
        for group, cells in self.groups.items():
            for cell in cells:
                yield group, cell


def grid(config: str, models: Sequence, balancers: Sequence, *, stl: str | None = "single_task",
         model_config: Callable[[str], str] | None = None, extra: Mapping[str, object] | None = None,
         gradient_diagnostics: bool = True, tune: Mapping[str, Sequence] | None = None) -> list[CellSpec]:
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
      tune: the search grid of every cell (``CellSpec.tune``).
    """
    import mtl.balancers as mb

    def entry(x):
        return (x, x, {}) if isinstance(x, str) else tuple(x)

    spec = model_config or (lambda name: config)
    cells = []
    if stl:
        cells.append(CellSpec(f"{stl}__ew", spec(stl), {"model.name": stl, "balancer.name": "ew", **(extra or {})},
                              tune=dict(tune or {})))
    pairs = itertools.product(map(entry, models), map(entry, balancers))
    for (m_label, m_name, m_hp), (b_label, b_name, b_hp) in pairs:
        overrides = {"model.name": m_name, "balancer.name": b_name, **(extra or {})}
        overrides.update({f"model.hparams.{k}": v for k, v in m_hp.items()})
        overrides.update({f"balancer.hparams.{k}": v for k, v in b_hp.items()})
        if m_label != m_name or b_label != b_name:
            overrides["label"] = "/".join(x for x, n in ((m_label, m_name), (b_label, b_name)) if x != n)
        if gradient_diagnostics and mb.get(b_name, **b_hp).needs_grads:
            overrides["diagnostics"] = "epoch"
        cells.append(CellSpec(f"{m_label}__{b_label}", spec(m_name), overrides, tune=dict(tune or {})))
    return cells


def own_hparam_rows(config: str, model: str, grids: Mapping[str, tuple[str, Sequence]], *,
                    rates: Sequence[float], model_config: Callable[[str], str] | None = None,
                    extra: Mapping[str, object] | None = None) -> list[CellSpec]:
    """A second row of ``model`` per method whose own hyperparameter is searched jointly with the learning
    rate: ``grids[method] = (hyperparameter, values)`` gives the cell ``<model>__<method>_<hyperparameter>``,
    labelled ``"<hyperparameter> tuned"``, tuned on ``rates`` x ``values`` (the issue's priority 4)."""
    cells = []
    for method, (hp, values) in grids.items():
        (cell,) = grid(config, (model,), [(f"{method}_{hp}", method, {})], stl=None, extra=extra,
                       model_config=model_config, tune={"learning_rate": rates, f"balancer.hparams.{hp}": values})
        cells.append(dataclasses.replace(cell, overrides={**cell.overrides, "label": f"{hp} tuned"}))
    return cells


def own_hparam_text(grids: Mapping[str, tuple[str, Sequence]]) -> str:
    """What :func:`own_hparam_rows` tuned, for a benchmark's ``tuning`` line (``""`` for no grids)."""
    if not grids:
        return ""
    return (", and in a second row tuned with the rate ("
            + "; ".join(f"{n} {hp} on {{{', '.join(f'{v:g}' for v in vs)}}}" for n, (hp, vs) in grids.items()) + ")")


def front(config: str, model: str, weights: Sequence[Sequence[float]], *, tune_from: str = "",
          tune: Mapping[str, Sequence] | None = None, extra: Mapping[str, object] | None = None) -> list[CellSpec]:
    """The scalarization front of ``model``: one ``fixed``-weighting cell per weight vector, named
    ``<model>__fixed_<w1>_<w2>...``, trained at ``tune_from``'s chosen values or tuned on ``tune``."""
    cells = []
    for w in weights:
        text = "_".join(f"{x:g}" for x in w)
        overrides = {"model.name": model, "balancer.name": "fixed", "balancer.hparams.weights": tuple(w),
                     "label": "w=" + ":".join(f"{x:g}" for x in w), **(extra or {})}
        cells.append(CellSpec(f"{model}__fixed_{text}", config, overrides, tune=dict(tune or {}), tune_from=tune_from))
    return cells


def simplex(num_tasks: int, step: float, *, interior: bool = False) -> list[tuple[float, ...]]:
    """The weight vectors on the simplex grid of spacing ``step`` (each weight a multiple of it, sum 1), in
    lexicographic order: ``simplex(2, 0.1)`` is ``(0, 1), (0.1, 0.9), ..., (1, 0)``. ``interior``: only
    those with every weight > 0 (a zero weight leaves its task untrained; over 4 tasks at step 1/3 every
    vector has one, at step 1/7 twenty have none)."""
    n = round(1 / step)
    if abs(n * step - 1) > 1e-9:
        raise ValueError(f"simplex: step {step} does not divide 1")
    out = [c for c in itertools.product(range(int(interior), n + 1), repeat=num_tasks) if sum(c) == n]
    return [tuple(round(k / n, 10) for k in c) for c in out]
