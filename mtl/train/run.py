"""One experiment: a resolved config in, a run directory out (:func:`train_and_evaluate`)."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

from mtl.config import (ConfigError, build_balancer, build_model, build_optimizer, config_hash, plain, resolve,
                        seed_list, kwargs_of, validate)
from mtl.rundir import RunFiles, git_commit, prepare_workdir
from mtl.train import distributed



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
    from mtl.train.loop import fit

    if not resolved:
        config = resolve(config)
    if config.get("distributed", False):  # before anything touches the JAX backend
        distributed.initialize()
    if not resolved:
        validate(config)
    main = distributed.is_main_process()
    workdir = pathlib.Path(workdir)
    config_json = plain(config)
    finished = _prepare_on_main(workdir, config_json, overwrite, main)
    if finished is not None:
        return finished

    data_kwargs = kwargs_of(config.data)
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
        "data_info": plain(data.info),
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
            checkpoint_dir=str(workdir / "checkpoints") if every > 0 else None,  # every process saves (orbax)
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
            info = {**info, "protocol": datas[i].info.get("protocol", ""), "data_info": plain(datas[i].info)}
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


def _prepare_on_main(workdir, config_json, overwrite, main):
    """:func:`prepare_workdir` on process 0 only; every process gets its outcome (or its error)."""
    try:
        outcome = {"finished": prepare_workdir(workdir, config_json, overwrite)} if main else None
    except ConfigError as e:
        outcome = {"error": str(e)}
    outcome = distributed.broadcast_json(outcome)
    if "error" in outcome:
        raise ConfigError(outcome["error"])
    return outcome["finished"]


def _write_failure(workdir, folders, failure, seeds):
    if not distributed.is_main_process():
        return
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
