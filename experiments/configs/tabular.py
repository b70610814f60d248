"""Any delimited file with a header (mtl.data.tabular): set the file and the label columns.

    python -m mtl.train --config=experiments/configs/tabular.py --workdir=/tmp/run \
        --config.data.path=clicks.csv --config.data.label_columns=click,purchase

    # separate files, a real-valued label, forced column types, dropped ids:
    python -m mtl.train --config=experiments/configs/tabular.py --workdir=/tmp/run \
        --config.data.path=train.csv --config.data.validation_path=val.csv \
        --config.data.test_path=test.csv --config.data.label_columns=is_click,play_time_ms \
        --config.data.regression_columns=play_time_ms --config.data.drop_columns=user_id,video_id \
        --config.data.categorical_columns=tab

List-valued keys are comma-separated strings so that they can be overridden on the
command line. ``data.path`` and ``data.label_columns`` are empty by default: the
loader stops with a message saying how to set them. The loader prints the column
types it inferred; see docs/data.md for the rules, missing values and errors.
"""

from experiments.configs.common import base_config


def get_config(arg: str | None = None):
    c = base_config()  # trains until validation stops improving: patience 5, at most 100 epochs, batch 256
    c.model.name = "mmoe"
    c.data.name = "tabular"
    c.data.path = ""
    c.data.label_columns = ""
    c.data.regression_columns = ""
    c.data.categorical_columns = ""
    c.data.numeric_columns = ""
    c.data.drop_columns = ""
    c.data.delimiter = ""
    c.data.split = "0.8,0.1,0.1"
    c.data.seed = 0
    c.data.validation_path = ""
    c.data.test_path = ""
    c.data.hash_buckets = 0
    c.data.hash_threshold = 0
    c.data.missing_indicators = False
    c.data.max_categorical_distinct = 50
    c.data.allow_single_class = False
    c.data.verbose = True
    c.data.standardize_labels = True  # regression labels scaled with training statistics; metrics in original units
    c.data.user_column = ""  # a user id column enables GAUC
    c.data.cache_dir = ""
    if arg == "smoke":
        c.epochs = 1
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use 'smoke' or nothing")
    return c
