"""The MMoE paper's synthetic tasks at rho = 0.5, tuned, against the scalarization front.

    mtl-bench --bench=synthetic_front          # results/synthetic_front/rho_0.5/
    mtl-bench --bench=synthetic_front --smoke

The data of ``experiments/benchmarks/synthetic.py`` (two regression tasks, each seed
its own draw of the data, 30 epochs, batch 128, Adam) at task correlation 0.5.
Rows: single-task and MMoE with equal weighting and 8 methods. Tuned: the learning
rate of every row on ``LEARNING_RATES`` (up to 3e-2: on the first grid, which stopped at
3e-3, every MMoE row chose 3e-3, and with 1e-2 added seven of nine chose 1e-2), chosen on validation (minus the mean
standardised validation MSE at the best epoch) over the selection seeds
``TUNE_SEEDS``, then trained with 10 seeds (0-9). Not tuned: the methods' own
hyperparameters (their factories' defaults, as in ``census_income_tuned``), model
sizes, batch size, weight decay (0). The scalarization front of MMoE: ``fixed``
weights (w, 1 - w), w = 0, 0.1, ..., 1, trained at equal weighting's tuned rate.
"""

from mtl.bench.grid import Benchmark, front, grid, simplex

BALANCERS = ("ew", "uw", "gradnorm", "pcgrad", "mgda", "cagrad", "nash_mtl", "famo", "fairgrad")
LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
TUNE_SEEDS = (100, 101, 102)
RHO = 0.5


def get_bench(smoke: bool = False) -> Benchmark:
    config = "experiments/configs/synthetic.py" + (":smoke" if smoke else "")
    extra = {"data_per_seed": True, "checkpoint_every": 0, "data.correlation": RHO, "epochs": 30 if not smoke else 2}
    balancers, rates, step = (BALANCERS, LEARNING_RATES, 0.1) if not smoke else (("ew", "mgda"), (1e-3, 1e-2), 0.5)
    cells = grid(config, ("mmoe",), balancers, extra=extra, tune={"learning_rate": rates})
    cells += front(config, "mmoe", simplex(2, step), tune_from="mmoe__ew", extra=extra)
    return Benchmark(title=f"MMoE synthetic experiment at rho = {RHO}, tuned, against the scalarization front",
                     groups={f"rho_{RHO}": cells}, seeds=10 if not smoke else 3,
                     tune_seeds=TUNE_SEEDS if not smoke else (100, 101),
                     tuning=f"learning rate of every row tuned on {{{', '.join(f'{r:g}' for r in rates)}}}; the "
                            "scalarization front at equal weighting's tuned rate; methods' own hyperparameters at the "
                            "papers' defaults, model sizes, batch size and weight decay not tuned",
                     description=__doc__)
