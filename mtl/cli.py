"""The command line: ``mtl-train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]``.

Flags -> resolved config (:mod:`mtl.config`) -> :func:`mtl.train.run.train_and_evaluate`
-> exit status. What a run writes is described in :mod:`mtl.rundir`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from mtl.config import ConfigError, load_config_file, plain, resolve, split_overrides, validate

USAGE = """\
mtl-train: train one multi-task model with one balancing method; write its metrics and summary.

usage: mtl-train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...] [--overwrite] [--noprogress]

  --config=FILE[:ARG]   an experiment config file (experiments/configs/*.py); ARG picks a variant,
                        e.g. experiments/configs/synthetic.py:smoke or census_income.py:group2,ple
  --workdir=DIR         where config.json, metrics.jsonl, summary.json, events and checkpoints/ go;
                        a workdir holding a checkpoint of the same config resumes from it
  --config.KEY=VALUE    override any config key, e.g. --config.epochs=5 --config.balancer.name=cagrad
                        --config.balancer.hparams.c=0.4 --config.model.hparams.num_experts=4 --config.seeds=5;
                        every key is documented in experiments/configs/common.py; every hyperparameter of
                        the chosen model and balancer is under model.hparams / balancer.hparams
                        (--print_config shows them with their values)
  --overwrite           start afresh in a workdir that holds another or a finished run
  --print_config        print the resolved config and exit
  --noprogress          no progress bar
  --help, --helpshort   this text
"""


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def quiet_backend_logs() -> None:
    """Hides JAX's backend-probing lines (e.g. the missing TPU library) on a normal run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("jax._src.xla_bridge", "jax._src.compiler", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _error(message: str, status: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def run(argv: list[str] | None = None) -> None:
    """Entry point of ``mtl-train`` and ``python -m mtl.train``."""
    argv = list(sys.argv if argv is None else argv)
    quiet_backend_logs()
    args = argv[1:]
    if any(a in ("--help", "-h", "--helpshort", "--helpfull", "-?") for a in args):
        print(USAGE)
        sys.exit(0)
    try:
        overrides, rest = split_overrides(args)
    except ConfigError as e:
        _error(str(e))
    options = {"config": None, "workdir": None, "overwrite": False, "progress": True, "print_config": False}
    for a in rest:
        key, eq, value = a.lstrip("-").partition("=")
        if key in ("config", "workdir") and eq:
            options[key] = value
        elif key in ("overwrite", "progress", "print_config") and not eq:
            options[key] = True
        elif key in ("nooverwrite", "noprogress", "noprint_config") and not eq:
            options[key[2:]] = False
        else:
            _error(f"unknown argument {a!r}; see mtl-train --help")
    if not options["config"]:
        _error("--config=FILE[:ARG] is required (e.g. --config=experiments/configs/synthetic.py:smoke); "
               "see mtl-train --help")
    notes: list[str] = []
    try:
        config = resolve(load_config_file(options["config"]), overrides, notes)
        if config.get("distributed", False) and not options["print_config"]:  # before validation (JAX backend)
            from mtl.train import distributed

            distributed.initialize()
        validate(config)
    except ConfigError as e:
        _error(str(e))
    for note in notes:
        print(note, file=sys.stderr)
    if options["print_config"]:
        print(json.dumps(plain(config), indent=2, sort_keys=True))
        return
    if not options["workdir"]:
        _error("--workdir=DIR is required (where the run's files go); see mtl-train --help")

    from mtl.data.errors import DataError
    from mtl.models.adapters import ModelProtocolError
    from mtl.train.loop import NonFiniteLossError, TrainingInterrupted

    from mtl.train.run import format_summary, train_and_evaluate

    try:
        summary = train_and_evaluate(config, options["workdir"], progress=options["progress"],
                                     overwrite=options["overwrite"], resolved=True)
    except TrainingInterrupted as e:
        _error(str(e), 128 + int(e.signum))
    except (ConfigError, DataError, ModelProtocolError, NonFiniteLossError, ValueError) as e:
        _error(str(e))
    print(format_summary(summary))


def _signal_name(signum: int) -> str:
    return signal.Signals(signum).name


if __name__ == "__main__":
    run()
