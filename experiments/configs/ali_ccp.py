"""Ali-CCP (the ESMM dataset): click and conversion, or click and CTCVR.

    python -m mtl.train --config=experiments/configs/ali_ccp.py --workdir=/tmp/ali_ccp \
        --config.data.data_dir=/data    # holding ali_ccp/ali_ccp_{train,val,test}.csv
    python -m mtl.train --config=experiments/configs/ali_ccp.py:ctcvr --workdir=/tmp/esmm
    python -m mtl.train --config=experiments/configs/ali_ccp.py:smoke --workdir=/tmp/smoke \
        --config.data.data_dir=../shared/data

Arguments (comma-separated): ``ctcvr`` (tasks click and click-AND-conversion, as
ESMM evaluates), ``paddlerec`` / ``torch_rechub`` (force the file format),
``sample`` (the tiny public samples), ``smoke`` (the samples, one epoch).
``esmm`` / ``aitm`` select the conversion-funnel models (ESMM: CTR and CTCVR
losses over all impressions, CVR AUC on clicked impressions; AITM: information
transfer from the click to the conversion tower and the calibrator), e.g.
``:smoke,esmm``; their model sizes are the defaults of ``mtl.models.ESMM`` /
``mtl.models.AITM`` with this config's embedding size.

The full data (about 42M + 43M impressions) comes from Alibaba Tianchi; see
docs/data.md for the expected files. No reference numbers are claimed for this
config yet: the public samples are far too small to train on.
"""

from experiments.configs.common import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.epochs = 5
    c.patience = 2
    c.batch_size = 2048
    c.learning_rate = 1e-3
    c.model.name = "mmoe"
    c.data.name = "ali_ccp"
    c.data.data_dir = ""
    c.data.format = "auto"
    c.data.sample = False
    c.data.tasks = "click,conversion"
    c.data.seed = 0
    c.data.validation_fraction = 0.1
    c.data.cache_dir = ""
    c.data.allow_single_class = False
    c.data.user_column = "101"  # the user id field: GAUC per user
    for token in (arg or "").replace("+", ",").split(","):
        token = token.strip()
        if not token:
            continue
        if token == "ctcvr":
            c.data.tasks = "click,ctcvr"
        elif token in ("esmm", "aitm"):
            c.model.name = token
            c.data.tasks = "click,conversion"
        elif token in ("paddlerec", "torch_rechub"):
            c.data.format = token
        elif token == "sample":
            c.data.sample = True
        elif token == "smoke":
            c.data.sample = True
            c.epochs = 1
            c.batch_size = 32
        else:
            raise ValueError(f"unknown config argument {token!r}; use ctcvr, paddlerec, torch_rechub, sample, smoke, "
                             "esmm, aitm")
    return c
