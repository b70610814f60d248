"""KuaiRand-Pure (mtl.data.kuairand_pure): the standard log of 2022-04-25..05-08, temporal split.

    python -m mtl.train --config=experiments/configs/kuairand_pure.py:main --workdir=/tmp/kuairand \
        --config.data.data_dir=../shared/data/kuairand_pure
    python -m mtl.train --config=experiments/configs/kuairand_pure.py:watch,smoke --workdir=/tmp/smoke \
        --config.data.data_dir=../shared/data/kuairand_pure

Arguments (comma-separated): a task group, ``main`` (default: click, long view, like,
profile enter), ``all`` (adds comment, follow, forward) or ``watch`` (click, long view,
play time in seconds as a regression, learned as log1p); ``smoke`` for a check that
trains in seconds (one epoch of large batches).

``data.data_dir`` is the folder holding the two Parquet logs and the official user and
video feature CSVs (or a parent with kuairand_pure/); empty means ``$MTL_DATA_DIR``.
Train 2022-04-25..05-04, validation 05-05..05-06, test 05-07..05-08; GAUC per user_id.
See docs/data.md for the features and the leakage rules.
"""

from experiments.configs.common import base_config
from mtl.data.kuairand_pure import TASK_GROUPS


def get_config(arg: str | None = None):
    c = base_config()
    c.epochs = 20
    c.patience = 3
    c.batch_size = 1024
    c.learning_rate = 1e-3
    c.steps_per_call = 50
    c.model.name = "mmoe"
    c.model.hparams.num_experts = 4
    c.model.hparams.expert_hidden = (128, 64)
    c.model.hparams.tower_hidden = (32,)
    c.model.hparams.embed_dim = 16
    c.data.name = "kuairand_pure"
    c.data.data_dir = ""
    c.data.tasks = "main"
    c.data.min_count = 2
    c.data.cache_dir = ""
    for token in (arg or "").replace("+", ",").split(","):
        token = token.strip()
        if not token:
            continue
        if token in TASK_GROUPS:
            c.data.tasks = token
        elif token == "smoke":
            c.epochs = 1
            c.batch_size = 8192
            c.eval_batch_size = 32768
            c.model.hparams.expert_hidden = (32,)
            c.model.hparams.embed_dim = 4
        else:
            raise ValueError(f"unknown config argument {token!r}; use {', '.join(TASK_GROUPS)} or smoke")
    return c
