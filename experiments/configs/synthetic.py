"""MMoE synthetic benchmark, one run (Ma et al., KDD 2018, Sec. 3).

    python -m mtl.train --config=experiments/configs/synthetic.py --workdir=/tmp/syn \
        --config.model.name=mmoe --config.data.correlation=0.5 --config.seed=1
    python -m mtl.train --config=experiments/configs/synthetic.py:smoke --workdir=/tmp/smoke

The full paper-style sweep (all models, rho in {1.0, 0.9, 0.5}, several seeds)
is ``make run`` (``mtl-bench --bench=synthetic``, experiments/benchmarks/synthetic.py). Sizes follow the paper's
synthetic setup: 8 experts of 16 units, towers of 8 units, Adam 1e-3, batch 128.
"""

from experiments.configs.common import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.epochs = 20
    c.patience = 0  # the paper's fixed-length runs (training-loss curves)
    c.batch_size = 128
    c.eval_batch_size = 4096
    c.learning_rate = 1e-3
    c.steps_per_call = 200
    c.model.name = "mmoe"
    c.data.name = "synthetic"
    c.data.correlation = 0.5
    c.data.num_train = 100_000
    c.data.num_validation = 10_000
    c.data.num_test = 10_000
    c.data.seed = 0
    if arg == "smoke":
        c.epochs = 2
        c.data.num_train = 2_000
        c.data.num_validation = 500
        c.data.num_test = 500
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use 'smoke' or nothing")
    return c
