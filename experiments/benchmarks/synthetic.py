"""The MMoE paper's synthetic experiment (Ma et al., KDD 2018, Sec. 3): `make run`.

    mtl-bench --bench=synthetic          # results/synthetic/ (table.md, loss_curves.png, rho_*/)

Two regression tasks whose correlation is rho in {1.0, 0.9, 0.5}; Shared-Bottom
with 113 hidden units (parameter-matched to MMoE) and the paper's 16-unit
variant, OMoE, MMoE and the single-task baseline; 10 seeds per cell, trained
side by side, each seed on its own draw of the data (``data_per_seed``);
100,000 training rows, 30 epochs, Adam 1e-3, batch 128. Besides the generic
tables per rho, ``experiments/synthetic_report.py`` writes the paper's view:
training and test loss per model and rho with the orderings the paper claims,
and training-loss curves with 95% confidence bands.
"""

from mtl.bench.grid import Benchmark, grid

MODELS = (("sb113", "shared_bottom", {"bottom_hidden": (113,)}), ("sb16", "shared_bottom", {"bottom_hidden": (16,)}),
          "omoe", "mmoe")
CORRELATIONS = (1.0, 0.9, 0.5)


def get_bench(smoke: bool = False) -> Benchmark:
    from experiments.synthetic_report import report

    rhos = CORRELATIONS if not smoke else (0.9,)
    config = "experiments/configs/synthetic.py" + (":smoke" if smoke else "")
    extra = {"data_per_seed": True, "checkpoint_every": 0}
    extra.update({"epochs": 30} if not smoke else {"epochs": 2})
    groups = {f"rho_{r}": grid(config, MODELS if not smoke else ("mmoe",), ["ew"],
                               extra={**extra, "data.correlation": r})
              for r in rhos}
    return Benchmark(title="MMoE synthetic experiment", groups=groups, seeds=10 if not smoke else 2, report=report,
                     description=__doc__)
