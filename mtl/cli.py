"""The command line: ``mtl-train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]``.

This module is the edge where an ``ml_collections`` config becomes typed
arguments for the library (the rest of ``mtl`` never reads a config). A run
writes to its workdir

* ``config.json``: the resolved config (every hyperparameter, defaults included);
* ``metrics.jsonl``: one JSON line per epoch (train losses, mean task weights,
  optional gradient diagnostics, and ``{split: {task: {metric: value}}}``);
* ``steps.jsonl`` (with ``--config.diagnostics=step``): one line per train step;
* ``summary.json``: ``best_epoch``, ``validation`` and ``test`` at the best
  validation epoch, why training stopped, wall times, and what was run;
* ``events.out.tfevents.*``: the same curves for TensorBoard;
* ``checkpoints/``: orbax checkpoints; rerunning the same command resumes.

With several seeds (``--config.seeds=5``) each seed's files go to
``seed_<s>/`` and ``summary.json`` aggregates them (mean and std).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
from typing import Any

from mtl.config_edge import ConfigError, load_config_file, resolve, seed_list, split_overrides, validate

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


def _plain(x: Any) -> Any:
    """ConfigDict / tuples -> JSON-able plain Python."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _kwargs(cfg) -> dict:
    d = _plain(cfg) if cfg is not None else {}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}


def build_optimizer(learning_rate: float, weight_decay: float = 0.0):
    import optax

    if weight_decay:
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    return optax.adam(learning_rate)


def build_model(config, data):
    """The configured model for ``data``'s shape (every ``model.hparams`` key is a constructor keyword)."""
    import mtl.models as mm

    return mm.get(config.model.name, num_tasks=len(data.tasks), num_numeric=len(data.numeric_names),
                  vocab_sizes=data.vocab_sizes, task_names=data.task_names, **_kwargs(config.model.hparams))


def build_balancer(config):
    """The configured balancer; hyperparameters left ``None`` (run facts such as
    ``steps_per_epoch``) are filled in by the training loop."""
    import mtl.balancers as mb

    hparams = {k: v for k, v in _kwargs(config.balancer.hparams).items() if v is not None}
    return mb.get(config.balancer.name, **hparams)


def config_hash(config) -> str:
    return hashlib.sha256(json.dumps(_plain(config), sort_keys=True).encode()).hexdigest()[:12]


def git_commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------------------
# Workdir
# ---------------------------------------------------------------------------

RUN_FILES = ("config.json", "metrics.jsonl", "steps.jsonl", "summary.json")


def _diff(a, b, prefix=""):
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def clear_workdir(workdir: pathlib.Path) -> None:
    for name in RUN_FILES:
        (workdir / name).unlink(missing_ok=True)
    for p in list(workdir.glob("events.out.tfevents.*")):
        p.unlink()
    for d in [workdir / "checkpoints", *workdir.glob("seed_*")]:
        if d.is_dir():
            shutil.rmtree(d)


def prepare_workdir(workdir: pathlib.Path, config_json: dict, overwrite: bool) -> dict | None:
    """Checks the workdir against the config: returns a finished run's summary (nothing
    to do), ``None`` to train (fresh or resuming); refuses another config's workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    existing = workdir / "config.json"
    if overwrite:
        clear_workdir(workdir)
    elif existing.is_file():
        try:
            old = json.loads(existing.read_text())
        except json.JSONDecodeError:
            old = None
        if old != config_json:
            diff = _diff(old or {}, config_json)
            raise ConfigError(f"--workdir={workdir} holds a run of a different config ({'; '.join(diff[:4])}"
                              f"{'; ...' if len(diff) > 4 else ''}); use another --workdir, or --overwrite")
        summary = workdir / "summary.json"
        if summary.is_file():
            try:
                s = json.loads(summary.read_text())
            except json.JSONDecodeError:
                s = {}
            if s and "error" not in s and "interrupted" not in s:
                return s
    existing.write_text(json.dumps(config_json, indent=2, sort_keys=True))
    return None


class RunFiles:
    """metrics.jsonl / steps.jsonl / TensorBoard writers of one seed's folder."""

    def __init__(self, folder: pathlib.Path, names, diagnostics: str, tensorboard: bool):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.names = folder, list(names)
        self.metrics = folder / "metrics.jsonl"
        self.steps = folder / "steps.jsonl" if diagnostics == "step" else None
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir=str(folder), flush_secs=30)

    def reset(self, history: list[dict], steps_done: int) -> None:
        """Rewrites the files to what a checkpoint holds (resume) or empties them (fresh start)."""
        with self.metrics.open("w") as f:
            for record in history:
                f.write(json.dumps(record) + "\n")
        if self.steps is not None:
            keep = []
            if self.steps.is_file() and steps_done:
                with self.steps.open() as f:
                    for i, line in enumerate(f):
                        if i >= steps_done:
                            break
                        keep.append(line)
            self.steps.write_text("".join(keep))

    def epoch(self, record: dict) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            e = record["epoch"]
            scalars = {f"{group}/{task}": v for group in ("train_loss", "weights", "grad_norms")
                       for task, v in record.get(group, {}).items()}
            scalars.update({f"grad_cos/{pair}": v for pair, v in record.get("grad_cos", {}).items()})
            scalars.update({f"{split}/{task}/{m}": v for split in ("validation", "test", "train")
                            for task, ms in record.get(split, {}).items() for m, v in ms.items()})
            for tag, v in scalars.items():
                if math.isfinite(v):  # an undefined metric (AUC of one class) is left out of the curves
                    self._tb.add_scalar(tag, v, e)
            self._tb.flush()

    def step_lines(self, epoch: int, first_step: int, outs: dict) -> None:
        names = self.names
        with self.steps.open("a") as f:
            for i in range(len(outs["losses"])):
                rec = {"epoch": epoch, "step": first_step + i,
                       "losses": dict(zip(names, map(float, outs["losses"][i]))),
                       "weights": dict(zip(names, map(float, outs["weights"][i])))}
                if "grad_norms" in outs:
                    rec["grad_norms"] = dict(zip(names, map(float, outs["grad_norms"][i])))
                    rec["grad_cos"] = {f"{names[a]}|{names[b]}": float(outs["grad_cos"][i][a, b])
                                       for a in range(len(names)) for b in range(a + 1, len(names))}
                f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------


def train_and_evaluate(config, workdir: str | os.PathLike, *, progress: bool = True, overwrite: bool = False,
                       resolved: bool = False) -> dict:
    """Runs one experiment described by ``config`` and writes its files to ``workdir``.

    ``config`` is resolved (every hyperparameter filled in) and validated first
    unless ``resolved``; a workdir holding a checkpoint of the same config resumes.
    Returns the summary (with ``history`` for one seed, ``runs`` for several).
    """
    import jax

    import mtl.data as md
    import mtl.models as mm
    from mtl.train import fit

    if not resolved:
        config = resolve(config)
        validate(config)
    if config.get("distributed", False):
        jax.distributed.initialize()
    workdir = pathlib.Path(workdir)
    config_json = _plain(config)
    finished = prepare_workdir(workdir, config_json, overwrite)
    if finished is not None:
        return finished

    data_kwargs = _kwargs(config.data)
    data_name = data_kwargs.pop("name")
    seeds = seed_list(config)
    per_seed_data = bool(config.get("data_per_seed", False)) and seeds is not None
    if per_seed_data:
        if "seed" not in data_kwargs:
            raise ConfigError(f"config.data_per_seed=True: dataset {data_name!r} takes no seed")
        datas = [md.load(data_name, **{**data_kwargs, "seed": s}) for s in seeds]
        data = datas[0]
    else:
        data = md.load(data_name, **data_kwargs)
    model = build_model(config, data)
    balancer = build_balancer(config)
    steps_per_epoch = len(data.train) // min(int(config.batch_size), len(data.train))
    if steps_per_epoch < 10:
        print(f"note: {steps_per_epoch} train step(s) per epoch (batch_size {config.batch_size}, "
              f"{len(data.train)} training rows); a smaller --config.batch_size gives early stopping more to go on",
              file=sys.stderr)
    seed_ids = [int(config.seed)] if seeds is None else seeds
    diagnostics = str(config.get("diagnostics", "") or "")
    loss_names = tuple(model.loss_names or data.task_names)
    main = jax.process_index() == 0
    folders = {s: (workdir if seeds is None else workdir / f"seed_{s}") for s in seed_ids}
    files = {s: RunFiles(folders[s], loss_names, diagnostics, bool(config.get("tensorboard", True)) and main)
             for s in seed_ids} if main else {}
    for f in files.values():
        f.reset([], 0)

    def on_resume(meta):
        for i, s in enumerate(seed_ids):
            if s in files:
                files[s].reset(meta["history"][i], int(meta["global_step"]))

    def on_epoch(record):
        if record["seed"] in files:
            files[record["seed"]].epoch(record)

    def on_steps(epoch, first_step, outs):
        for i, s in enumerate(seed_ids):
            if s in files:
                files[s].step_lines(epoch, first_step, outs if seeds is None else {k: v[i] for k, v in outs.items()})

    info = {
        "model": config.model.name,
        "balancer": config.balancer.name,
        "dataset": data_name,
        "protocol": data.info.get("protocol", ""),
        "data_info": _plain(data.info),
        "tasks": {t.name: t.kind for t in data.tasks},
        "loss_names": list(loss_names),
        "rows": {s: len(getattr(data, s)) for s in ("train", "validation", "test")},
        "devices": jax.device_count() if not config.get("num_devices", 0) else int(config.num_devices),
        "commit": git_commit(),
        "config_hash": config_hash(config),
    }
    budget = int(config.get("device_memory_budget_mb", 0) or 0)
    every = int(config.get("checkpoint_every", 1))
    from mtl.train.loop import NonFiniteLossError, TrainingInterrupted

    try:
        result = fit(
            model, balancer, datas if per_seed_data else data,
            optimizer=build_optimizer(config.learning_rate, config.get("weight_decay", 0.0)),
            epochs=int(config.epochs), batch_size=int(config.batch_size),
            seed=int(config.seed) if seeds is None else seeds,
            patience=int(config.patience), eval_batch_size=int(config.eval_batch_size),
            steps_per_call=int(config.steps_per_call),
            rep_grad=bool(config.balancer.rep_grad),
            balance_embeddings=bool(config.balancer.balance_embeddings),
            weight_heads=bool(config.balancer.weight_heads),
            diagnostics=bool(diagnostics), select_by=config.select_by,
            on_nonfinite=config.get("on_nonfinite", "stop"),
            num_devices=int(config.get("num_devices", 0)) or None,
            checkpoint_dir=str(workdir / "checkpoints") if every > 0 and main else None,
            checkpoint_every=max(every, 1), max_checkpoints=int(config.get("max_checkpoints", 2)),
            handle_signals=True,
            device_memory_budget=budget * 2**20 if budget else None,
            on_epoch=on_epoch, on_steps=on_steps if diagnostics == "step" else None, on_resume=on_resume,
            progress=progress,
        )
    except NonFiniteLossError as e:
        _write_failure(workdir, folders, {**info, "error": str(e), "epoch": e.epoch, "step": e.step,
                                          "task": e.task}, seeds)
        raise
    except TrainingInterrupted as e:
        _write_failure(workdir, folders, {**info, "interrupted": str(e), "epoch": e.epoch}, seeds)
        raise
    finally:
        for f in files.values():
            f.close()

    runs = [result] if seeds is None else result["runs"]
    summaries = []
    for i, run in enumerate(runs):
        if per_seed_data:  # each seed's own generated data
            info = {**info, "protocol": datas[i].info.get("protocol", ""), "data_info": _plain(datas[i].info)}
        out = {
            "best_epoch": run["best_epoch"],
            "validation": run["validation"],
            "test": run["test"],
            "epochs_run": run["epochs_run"],
            "stop_reason": run["stop_reason"],
            "select_by": run["select_by"],
            "skipped_steps": run["skipped_steps"],
            "train_seconds": run["train_seconds"],
            "step_seconds": run["step_seconds"],
            "num_params": mm.count_params(run["params"]),
            "seed": run["seed"],
            **info,
        }
        if main:
            (folders[run["seed"]] / "summary.json").write_text(json.dumps(out, indent=2))
        summaries.append({**out, "history": run["history"]})
    if seeds is None:
        return summaries[0]
    aggregate = aggregate_summaries(summaries, info)
    if main:
        (workdir / "summary.json").write_text(json.dumps(aggregate, indent=2))
    return {**aggregate, "per_seed": summaries}


def _write_failure(workdir, folders, failure, seeds):
    (workdir / "summary.json").write_text(json.dumps(failure, indent=2))
    if seeds is not None:
        for folder in folders.values():
            (folder / "summary.json").write_text(json.dumps(failure, indent=2))


def aggregate_summaries(summaries: list[dict], info: dict) -> dict:
    """Mean and standard deviation (ddof 1) over seeds of every validation and test metric."""
    import numpy as np

    out: dict[str, Any] = {"seeds": [s["seed"] for s in summaries],
                           "runs": {str(s["seed"]): f"seed_{s['seed']}" for s in summaries}}
    for split in ("validation", "test"):
        mean, std = {}, {}
        for task, metrics in summaries[0][split].items():
            mean[task], std[task] = {}, {}
            for m in metrics:
                v = np.array([s[split][task][m] for s in summaries], np.float64)
                mean[task][m] = float(np.mean(v))
                std[task][m] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        out[f"{split}_mean"], out[f"{split}_std"] = mean, std
    out["best_epochs"] = [s["best_epoch"] for s in summaries]
    out["stop_reasons"] = [s["stop_reason"] for s in summaries]
    out["train_seconds"] = summaries[0]["train_seconds"]
    out["step_seconds"] = summaries[0]["step_seconds"]
    out["num_params"] = summaries[0]["num_params"]
    return {**out, **info}


def format_summary(summary: dict) -> str:
    if "seeds" in summary:
        lines = [f"{summary['model']} + {summary['balancer']} on {summary['dataset']} ({summary.get('protocol', '')}), "
                 f"seeds {summary['seeds']}: best epochs {summary['best_epochs']}, "
                 f"{summary['train_seconds']:.1f} s training"]
        for split in ("validation", "test"):
            parts = [f"{task}: " + ", ".join(f"{m}={v:.4f}±{summary[f'{split}_std'][task][m]:.4f}"
                                             for m, v in ms.items() if m in ("auc", "mse", "logloss", "mae"))
                     for task, ms in summary[f"{split}_mean"].items()]
            lines.append(f"  {split:10s} " + " | ".join(parts))
        lines.append(f"  stopped: {summary['stop_reasons'][0]}" + (" (first seed)" if len(summary["seeds"]) > 1
                                                                    else ""))
        return "\n".join(lines)
    lines = [f"{summary['model']} + {summary['balancer']} on {summary['dataset']} "
             f"({summary.get('protocol', '')}), seed {summary['seed']}: best epoch {summary['best_epoch']}, "
             f"{summary['train_seconds']:.1f} s training"]
    for split in ("validation", "test"):
        parts = [f"{task}: " + ", ".join(f"{m}={v:.4f}" for m, v in ms.items()
                                         if m in ("auc", "gauc", "logloss", "f1", "mse", "mae"))
                 for task, ms in summary[split].items()]
        lines.append(f"  {split:10s} " + " | ".join(parts))
    lines.append(f"  stopped: {summary.get('stop_reason', '')}")
    return "\n".join(lines)


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
        validate(config)
    except ConfigError as e:
        _error(str(e))
    for note in notes:
        print(note, file=sys.stderr)
    if options["print_config"]:
        print(json.dumps(_plain(config), indent=2, sort_keys=True))
        return
    if not options["workdir"]:
        _error("--workdir=DIR is required (where the run's files go); see mtl-train --help")

    from mtl.data.errors import DataError
    from mtl.models.adapters import ModelProtocolError
    from mtl.train.loop import NonFiniteLossError, TrainingInterrupted

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
