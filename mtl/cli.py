"""The command line: ``mtl-train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]``.

Flags -> resolved config (:mod:`mtl.config`) -> :func:`mtl.train.run.train_and_evaluate`
-> exit status. What a run writes is described in :mod:`mtl.rundir`.

The flags are absl flags (:func:`parse_flags`, shared with ``mtl-bench``), in
a fresh ``FlagValues`` per call. ``--config`` and the ``--config.KEY=VALUE``
overrides are not ``ml_collections.config_flags``: those type an override by
the value the config file holds, and most keys (every model and balancer
hyperparameter) exist only once ``model.name`` and ``balancer.name`` are known,
so :func:`mtl.config.resolve` types them against the chosen model's and
balancer's signatures. Every mistake ends with one line, ``error: ...``, and
exit status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import sys
import textwrap

from absl import flags

from mtl.config import ConfigError, load_config_file, plain, resolve, split_overrides, validate


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag: ``--name=META`` (``META`` empty for a boolean) and its help."""

    name: str
    default: object
    help: str
    meta: str = ""

    @property
    def boolean(self) -> bool:
        return isinstance(self.default, bool)


class UsageError(ValueError):
    """A command-line mistake, explained in one line."""


TRAIN_FLAGS = (
    Flag("config", None, "an experiment config file (experiments/configs/*.py); ARG picks a variant, e.g. "
                         "experiments/configs/synthetic.py:smoke or census_income.py:group2,ple", "FILE[:ARG]"),
    Flag("workdir", None, "where config.json, metrics.jsonl, summary.json, events and checkpoints/ go; a workdir "
                          "holding a checkpoint of the same config resumes from it", "DIR"),
    Flag("overwrite", False, "start afresh in a workdir that holds another or a finished run"),
    Flag("print_config", False, "print the resolved config and exit"),
    Flag("progress", True, "a progress bar (--noprogress: none)"),
    Flag("compilation_cache", True, "JAX's persistent compilation cache in $MTL_CACHE_DIR/jax (default "
                                    "~/.cache/mtl/jax): a resumed run compiles nothing new "
                                    "(--nocompilation_cache: off)"),
)

TRAIN_USAGE = ("mtl-train: train one multi-task model with one balancing method; write its metrics and summary.",
               "usage: mtl-train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...] [--overwrite] "
               "[--noprogress]")
OVERRIDES_HELP = ("--config.KEY=VALUE", "override any config key, e.g. --config.epochs=5 --config.balancer.name=cagrad "
                  "--config.balancer.hparams.c=0.4 --config.model.hparams.num_experts=4 --config.seeds=5; every key is "
                  "documented in experiments/configs/common.py; every hyperparameter of the chosen model and balancer "
                  "is under model.hparams / balancer.hparams (--print_config shows them with their values); "
                  "--config.sweep.learning_rate=1e-4,1e-3 (or weight_decay, balancer.hparams.NAME) trains those "
                  "values side by side in one program, one run directory per value (README: Sweeps)")

HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull", "-?")


def help_text(usage: tuple[str, str], specs, extra: tuple[tuple[str, str], ...] = ()) -> str:
    """The ``--help`` text: what the program does, its usage line, one entry per flag."""
    rows = [(f"--{f.name}" + (f"={f.meta}" if f.meta else ""), f.help) for f in specs] + list(extra)
    rows.append(("--help, --helpshort", "this text"))
    width = max(len(r[0]) for r in rows) + 4
    lines = [usage[0], "", usage[1], ""]
    for form, text in rows:
        wrapped = textwrap.wrap(text, 110 - width) or [""]
        lines.append(f"  {form.ljust(width - 2)}{wrapped[0]}")
        lines += [" " * width + w for w in wrapped[1:]]
    return "\n".join(lines) + "\n"


def parse_flags(specs, args: list[str], program: str) -> dict:
    """``{name: value}`` of ``specs`` parsed from ``args`` by absl (``--name=value``, ``--name value``,
    ``--[no]boolean``; dashes in a name work as underscores). Raises :class:`UsageError` for an unknown
    flag (with the closest one), a flag without its value, a bad boolean or a positional argument."""
    values = flags.FlagValues()
    for f in specs:
        define = flags.DEFINE_bool if f.boolean else flags.DEFINE_string
        define(f.name, f.default, f.help, flag_values=values)
    names = {f.name for f in specs}
    args = [_underscored(a, names) for a in args]
    see = f"see {program} --help"
    try:
        rest = values([program, *args])
    except flags.UnrecognizedFlagError as e:
        known = [f"--{f.name}" for f in specs] + [f"--no{f.name}" for f in specs if f.boolean]
        close = difflib.get_close_matches(f"--{e.flagname}", known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown argument {e.flagvalue!r}{hint} ({see})") from None
    except flags.IllegalFlagValueError as e:
        given, _, why = str(e).removeprefix("flag ").partition(": ")
        raise UsageError(f"{given}: " + ("expected true or false" if "boolean" in why else why) + f" ({see})") from None
    except flags.Error as e:
        name = str(e).rpartition("--")[2]
        meta = next((f.meta for f in specs if f.name == name), "VALUE")
        raise UsageError(f"--{name} needs a value: --{name}={meta} ({see})") from None
    if rest[1:]:
        raise UsageError(f"unknown argument {rest[1]!r} ({see})")
    return {f.name: values[f.name].value for f in specs}


def _underscored(arg: str, names) -> str:
    """``--tables-only`` -> ``--tables_only`` (and ``--notables-only``) when that flag exists."""
    if not arg.startswith("--") or "-" not in arg[2:].partition("=")[0]:
        return arg
    name, eq, value = arg[2:].partition("=")
    fixed = name.replace("-", "_")
    if fixed in names or (fixed.startswith("no") and fixed[2:] in names):
        return f"--{fixed}{eq}{value}"
    return arg


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def quiet_backend_logs() -> None:
    """Hides JAX's backend-probing lines (e.g. the missing TPU library) on a normal run."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("jax._src.xla_bridge", "jax._src.compiler", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def error(message: str, status: int = 2):
    """Ends the program with ``error: message`` on stderr and ``status``."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


def run(argv: list[str] | None = None) -> None:
    """Entry point of ``mtl-train`` and ``python -m mtl.train``."""
    argv = list(sys.argv if argv is None else argv)
    quiet_backend_logs()
    args = argv[1:]
    if any(a in HELP_FLAGS for a in args):
        print(help_text(TRAIN_USAGE, TRAIN_FLAGS, (OVERRIDES_HELP,)))
        sys.exit(0)
    try:
        overrides, rest = split_overrides(args)
        options = parse_flags(TRAIN_FLAGS, rest, "mtl-train")
    except (ConfigError, UsageError) as e:
        error(str(e))
    if options["compilation_cache"]:  # before anything compiles (validation builds models)
        from mtl.train.compilation import enable_persistent_cache

        enable_persistent_cache()
    if not options["config"]:
        error("--config=FILE[:ARG] is required (e.g. --config=experiments/configs/synthetic.py:smoke); "
              "see mtl-train --help")
    notes: list[str] = []
    try:
        config = resolve(load_config_file(options["config"]), overrides, notes)
        if config.get("distributed", False) and not options["print_config"]:  # before validation (JAX backend)
            from mtl.train import distributed

            distributed.initialize()
        validate(config)
    except ConfigError as e:
        error(str(e))
    for note in notes:
        print(note, file=sys.stderr)
    if options["print_config"]:
        print(json.dumps(plain(config), indent=2, sort_keys=True))
        return
    if not options["workdir"]:
        error("--workdir=DIR is required (where the run's files go); see mtl-train --help")

    from mtl.data.errors import DataError
    from mtl.models.adapters import ModelProtocolError
    from mtl.train.loop import NonFiniteLossError, TrainingInterrupted
    from mtl.train.run import format_summary, train_and_evaluate

    try:
        summary = train_and_evaluate(config, options["workdir"], progress=options["progress"],
                                     overwrite=options["overwrite"], resolved=True)
    except TrainingInterrupted as e:
        error(str(e), 128 + int(e.signum))
    except (ConfigError, DataError, ModelProtocolError, NonFiniteLossError, ValueError) as e:
        error(str(e))
    print(format_summary(summary))


if __name__ == "__main__":
    run()
