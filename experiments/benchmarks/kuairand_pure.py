"""KuaiRand-Pure, the ``main`` task group, tuned: methods against tuned equal weighting, the front, single-task.

    mtl-bench --bench=kuairand_pure --data_dir=../shared/data/kuairand_pure     # results/kuairand_pure/main/
    mtl-bench --bench=kuairand_pure --smoke --data_dir=../shared/data/kuairand_pure

``experiments/configs/kuairand_pure.py:main``: click, long view, like and profile
enter; temporal split (train 04-25..05-04, validation 05-05..05-06, test
05-07..05-08); early stopping on mean validation AUC (patience 3, at most 20
epochs); AUC and GAUC per user (the loader's ``user_column`` is ``user_id``) for
every task. Rows: single-task and MMoE (4 experts of 128-64 units) with equal
weighting and 8 methods. Tuned: the learning rate of every row on
``LEARNING_RATES`` (extended downwards: with the default 1e-3 the single-task
model's best epoch was the first; and up to 1e-2, since 3e-3, the first grid's top, was the
choice of every row but GradNorm's; a row that then chose 1e-2 also on ``WIDER``),
chosen on validation over ``TUNE_SEEDS``, then
trained with 5 seeds (0-4). Not tuned: the methods' own hyperparameters (their
factories' defaults, as in ``census_income_tuned``; census's own-hyperparameter grids
would cost more than this budget here: CAGrad's 20 points x 3 seeds, 60 replicas in one
sweep, took about 10 minutes an epoch on one core beside another job, up to 20 epochs),
embedding size, weight decay (0). The scalarization front of MMoE, at equal weighting's tuned rate: ``fixed``
weights on the simplex grid of step 1/7 over the 4 tasks with every weight at
least 1/7 (20 vectors; a zero weight leaves its task untrained, near chance, and the
first front, step 1/3, held only such vectors). The front's test, its hypervolume and the figure use each task's AUC.
"""

import dataclasses

from mtl.bench.grid import Benchmark, front, grid, simplex

BALANCERS = ("ew", "uw", "gradnorm", "pcgrad", "mgda", "cagrad", "nash_mtl", "famo", "fairgrad")
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
#: Rows whose choice was the grid's top rate, with the rates added above it.
WIDER = {"single_task__ew": (3e-2,)}
TUNE_SEEDS = (100, 101, 102)
FRONT_STEP = 1 / 7


def get_bench(smoke: bool = False) -> Benchmark:
    config = "experiments/configs/kuairand_pure.py:main" + (",smoke" if smoke else "")
    balancers, rates, step = (BALANCERS, LEARNING_RATES, FRONT_STEP) if not smoke else (("ew", "pcgrad"), (1e-3,), 1.0)
    extra = {"checkpoint_every": 5} if not smoke else {}
    cells = grid(config, ("mmoe",), balancers, extra=extra, tune={"learning_rate": rates})
    if not smoke:
        cells = [dataclasses.replace(c, tune={"learning_rate": rates + WIDER[c.name]}) if c.name in WIDER else c
                 for c in cells]
    cells += front(config, "mmoe", simplex(4, step, interior=not smoke), tune_from="mmoe__ew", extra=extra)
    wider = "".join(f", {c} also on {{{', '.join(f'{r:g}' for r in v)}}}" for c, v in WIDER.items() if not smoke)
    return Benchmark(title="KuaiRand-Pure, main tasks, temporal split, tuned", groups={"main": cells},
                     seeds=5 if not smoke else 3, tune_seeds=TUNE_SEEDS if not smoke else 1, metrics=("auc", "gauc"),
                     tuning=f"learning rate of every row tuned on {{{', '.join(f'{r:g}' for r in rates)}}}{wider}; the "
                            "scalarization front at equal weighting's tuned rate; methods' own hyperparameters at the "
                            "papers' defaults, embedding size and weight decay not tuned",
                     description=__doc__)
