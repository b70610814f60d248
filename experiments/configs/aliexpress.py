"""AliExpress (MTReclib / AITM format), one country: CTR and CTCVR-style tasks.

    python -m mtl.train --config=experiments/configs/aliexpress.py:NL --workdir=/tmp/ae_nl \
        --config.data.data_dir=/data   # holding aliexpress/AliExpress_NL/{train,test}.csv
    python -m mtl.train --config=experiments/configs/aliexpress.py:smoke --workdir=/tmp/smoke \
        --config.data.data_dir=../shared/data

Arguments: a country ``NL`` (default), ``ES``, ``FR``, ``US``, ``RU``; ``sample``
reads the 100 + 20 row public sample; ``smoke`` = the sample for one epoch;
``ctcvr`` switches the second task from ``conversion`` to click AND conversion.
``esmm`` / ``aitm`` select the conversion-funnel models (ESMM: CTR and CTCVR
losses over all impressions, CVR AUC on clicked impressions; AITM: information
transfer from the click to the conversion tower and the calibrator), e.g.
``:smoke,esmm``; their model sizes are the defaults of ``mtl.models.ESMM`` /
``mtl.models.AITM`` with this config's embedding size.

Training settings follow MTReclib's main.py (batch 2048, Adam lr 1e-3, weight
decay 1e-6, 50 epochs, embedding 128, towers (128, 64), dropout 0.2; its experts /
bottom MLP are (512, 256): set ``--config.model.hparams.expert_hidden=512,256``
for MoE models), except that the epoch is selected on a validation split cut from
train.csv (MTReclib early-stops on test.csv) with patience 2.

MTReclib README (AUC of CTR / CTCVR, mean of 5 runs): NL MMoE 0.7234 / 0.8606,
PLE 0.7292 / 0.8591; ES MMoE 0.7285 / 0.8898, PLE 0.7273 / 0.8913.
"""

from experiments.configs.common import base_config

COUNTRIES = ("NL", "ES", "FR", "US", "RU")


def get_config(arg: str | None = None):
    c = base_config()
    c.epochs = 50
    c.patience = 2
    c.batch_size = 2048
    c.learning_rate = 1e-3
    c.weight_decay = 1e-6
    c.model.name = "mmoe"
    c.model.hparams.embed_dim = 128
    c.model.hparams.tower_hidden = (128, 64)
    c.model.hparams.dropout = 0.2
    c.data.name = "aliexpress"
    c.data.data_dir = ""
    c.data.country = "NL"
    c.data.sample = False
    c.data.tasks = "click,conversion"
    c.data.seed = 0
    c.data.validation_fraction = 0.1
    c.data.cache_dir = ""
    c.data.allow_single_class = False
    for token in (arg or "").replace("+", ",").split(","):
        token = token.strip()
        if not token:
            continue
        if token.upper() in COUNTRIES:
            c.data.country = token.upper()
        elif token == "sample":
            c.data.sample = True
        elif token == "smoke":
            c.data.sample = True
            c.epochs = 1
            c.batch_size = 64
            c.data.validation_fraction = 0.2
            c.data.allow_single_class = True
        elif token in ("esmm", "aitm"):
            c.model.name = token
            c.model.hparams = {k: v for k, v in c.model.hparams.to_dict().items() if k in ("embed_dim", "dropout")}
            c.data.tasks = "click,conversion"
        elif token == "ctcvr":
            c.data.tasks = "click,ctcvr"
        else:
            raise ValueError(f"unknown config argument {token!r}; use a country {COUNTRIES}, sample, smoke, ctcvr, "
                             "esmm, aitm")
    return c
