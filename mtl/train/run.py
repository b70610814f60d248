"""One experiment: a resolved config in, a run directory out (:func:`train_and_evaluate`);
a sweep (``config.sweep``): one run directory per point (:func:`train_sweep`)."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any

import jax
import numpy as np

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from mtl.config import (
    ConfigError,
    build_balancer,
    build_model,
    build_optimizer,
    config_hash,
    kwargs_of,
    plain,
    point_config,
    resolve,
    run_json,
    seed_list,
    sweep_axes,
    sweep_points,
    validate,
)
from mtl.data.base import MultiTaskData
from mtl.rundir import RunFiles, git_commit, point_name, prepare_workdir, run_status
from mtl.train import distributed
from mtl.train import sweep as sw
from mtl.train.compilation import CompileTimer
from mtl.train.loop import NonFiniteLossError, TrainingInterrupted, fit, replica_memory


def train_and_evaluate(config, workdir: str | os.PathLike, *, progress: bool = True, overwrite: bool = False,
                       resolved: bool = False) -> dict:
    """Runs one experiment described by ``config`` and writes its files to ``workdir``.

    ``config`` is resolved (every hyperparameter filled in) and validated first
    unless ``resolved``; a workdir holding a checkpoint of the same config resumes.
    Returns the summary (with ``history`` for one seed, ``runs`` for several; a
    sweep's, see :func:`train_sweep`).
    """
    if not resolved:
        config = resolve(config)
    if config.get("distributed", False):  # before anything touches the JAX backend
        distributed.initialize()
    if not resolved:
        validate(config)
    if sweep_axes(config):
        return train_sweep(config, workdir, progress=progress, overwrite=overwrite)
    main = distributed.is_main_process()
    workdir = pathlib.Path(workdir)
    finished = _prepare_on_main(workdir, run_json(config), overwrite, main)
    if finished is not None:
        return finished

    seeds = seed_list(config)
    data_name, data, datas = load_data(config, seeds)
    model, balancer = build_model(config, data), build_balancer(config)
    _note_short_epochs(config, data)
    seed_ids = [int(config.seed)] if seeds is None else seeds
    folders = {s: (workdir if seeds is None else workdir / f"seed_{s}") for s in seed_ids}
    diagnostics = str(config.get("diagnostics", "") or "")
    loss_names = tuple(model.loss_names or data.task_names)
    files = SeedFiles([folders[s] for s in seed_ids] if main else [], seed_ids, seeds is not None, loss_names,
                      diagnostics, bool(config.get("tensorboard", True)))
    info = run_info(config, data_name, data, loss_names)
    try:
        with CompileTimer() as compiling:
            result = fit(model, balancer, data if datas is None else datas, **fit_options(config, workdir),
                         on_epoch=files.on_epoch, on_steps=files.on_steps if diagnostics == "step" else None,
                         on_resume=files.on_resume, progress=progress)
    except NonFiniteLossError as e:
        _write_failure(workdir, folders, {**info, "error": str(e), "epoch": e.epoch, "step": e.step,
                                          "task": e.task}, seeds)
        raise
    except TrainingInterrupted as e:
        _write_failure(workdir, folders, {**info, "interrupted": str(e), "epoch": e.epoch}, seeds)
        raise
    finally:
        files.close()
    runs = [result] if seeds is None else result["runs"]
    # this process's compiling (persistent-cache loads included) and the programs it had to compile anew
    info.update(compile_seconds=round(compiling.seconds, 3), compile_cache_misses=compiling.cache_misses)
    return write_summaries(workdir, folders, runs, info, datas, several=seeds is not None, main=main)


def train_sweep(config, workdir: str | os.PathLike, *, progress: bool = True, overwrite: bool = False) -> dict:
    """Trains every point of ``config.sweep`` times every seed side by side (resolved,
    validated ``config``; :mod:`mtl.train.sweep`).

    Each point ``p`` gets ``WORKDIR/<point_name(p)>/``, the run directory of the same
    values trained alone (its ``config.json`` holds the point's values, ``seed_<s>/``
    per seed with several seeds, the ``summary.json`` aggregating them); finished points
    are skipped. The points left are split into programs of at most
    ``sweep_memory_mb`` (:func:`mtl.train.sweep.memory_limit`), trained one after
    another, each checkpointing the whole replica state in
    ``WORKDIR/checkpoints/<hash of its points>/``. ``WORKDIR/summary.json`` names the
    points and their states; it is also what this returns.
    """
    main = distributed.is_main_process()
    workdir = pathlib.Path(workdir)
    _prepare_on_main(workdir, run_json(config), overwrite, main)
    points = sweep_points(config)
    configs = [point_config(config, p) for p in points]
    names = [point_name(p) for p in points]
    todo = [i for i, (c, n) in enumerate(zip(configs, names))
            if _prepare_on_main(workdir / n, run_json(c), overwrite, main) is None]
    seeds = seed_list(config)
    seed_ids = [int(config.seed)] if seeds is None else seeds
    notes = {}
    if todo:
        data_name, data, datas = load_data(config, seeds)
        _note_short_epochs(config, data)
        model = build_model(config, data)
        fixed = {k: v for k, v in kwargs_of(config.balancer.hparams).items() if v is not None}
        adamw = "weight_decay" in points[0] or float(config.weight_decay) > 0

        def replicas_of(group):
            values = sw.replica_values([points[i] for i in group], {"learning_rate": float(config.learning_rate),
                                                                   "weight_decay": float(config.weight_decay)},
                                       len(seed_ids))
            factory = mb.REGISTRY[config.balancer.name]  # not mb.get, which rewords a tracer's TypeError
            return sw.Replicas(values, lambda **h: factory(**{**fixed, **h}), adamw)

        options = fit_options(config, workdir)
        per_replica = replica_memory(model, build_balancer(configs[todo[0]]), data, replicas=replicas_of(todo[:1]),
                                     **{k: options[k] for k in ("batch_size", "steps_per_call", "rep_grad",
                                                                "balance_embeddings", "weight_heads", "diagnostics")})
        limit = sw.memory_limit(float(config.get("sweep_memory_mb", 0) or 0))
        groups = [[todo[i] for i in r] for r in sw.split_points(len(todo), len(seed_ids), per_replica, limit)]
        notes = {"replica_mb": round(per_replica / 2**20, 3), "limit_mb": round(limit / 2**20, 3),
                 "programs": len(groups)}
        if len(groups) > 1:
            print(f"note: sweep of {len(todo)} points x {len(seed_ids)} seeds at about {notes['replica_mb']} MB per "
                  f"replica exceeds sweep_memory_mb ({notes['limit_mb']} MB): {len(groups)} programs, one after "
                  "another", file=sys.stderr)
        for group in groups:
            _train_points(config, workdir, [configs[i] for i in group], [names[i] for i in group],
                          replicas_of(group), model, data_name, data, datas, seed_ids, seeds is not None, options,
                          progress, main)
        # each program's compile time, as its first point's summary records it
        notes["compile_seconds"] = sum((run_status(workdir / names[g[0]]).summary or {}).get("compile_seconds", 0.0)
                                       for g in groups)
    summary = {"sweep": {k: list(v) for k, v in sweep_axes(config).items()},
               "points": {n: run_status(workdir / n).state for n in names}, **notes}
    if main:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _train_points(config, workdir, configs, names, replicas, model, data_name, data, datas, seed_ids, several,
                  options, progress, main) -> None:
    """One program of a sweep: the points ``configs`` (directories ``names``) times the seeds."""
    import hashlib

    diagnostics = str(config.get("diagnostics", "") or "")
    loss_names = tuple(model.loss_names or data.task_names)
    point_folders = [{s: (workdir / n if not several else workdir / n / f"seed_{s}") for s in seed_ids} for n in names]
    files = SeedFiles([f[s] for f in point_folders for s in seed_ids] if main else [], seed_ids * len(names), True,
                      loss_names, diagnostics, bool(config.get("tensorboard", True)))
    key = hashlib.sha256(json.dumps([names, seed_ids]).encode()).hexdigest()[:12]
    options = {**options, "seed": seed_ids * len(names), "replicas": replicas,
               "checkpoint_dir": None if options["checkpoint_dir"] is None else str(workdir / "checkpoints" / key)}
    infos = [run_info(c, data_name, data, loss_names) for c in configs]
    try:
        with CompileTimer() as compiling:
            result = fit(model, build_balancer(configs[0]), data if datas is None else datas * len(names), **options,
                         on_epoch=files.on_epoch, on_steps=files.on_steps if diagnostics == "step" else None,
                         on_resume=files.on_resume, progress=progress)
    except (NonFiniteLossError, TrainingInterrupted) as e:
        failure = {"error": str(e)} if isinstance(e, NonFiniteLossError) else {"interrupted": str(e)}
        for n, f, info in zip(names, point_folders, infos):
            _write_failure(workdir / n, f, {**info, **failure, "epoch": e.epoch}, None if not several else seed_ids)
        raise
    finally:
        files.close()
    k = len(seed_ids)
    for p, (n, f, info) in enumerate(zip(names, point_folders, infos)):
        info.update(compile_seconds=round(compiling.seconds, 3), compile_cache_misses=compiling.cache_misses)
        write_summaries(workdir / n, f, result["runs"][p * k:(p + 1) * k], info, datas, several=several, main=main)


def load_data(config, seeds: list[int] | None) -> tuple[str, MultiTaskData, list[MultiTaskData] | None]:
    """``(name, data, datas)``: the dataset, and with ``data_per_seed`` and several seeds
    one dataset per seed drawn with ``seed`` = that seed (``data`` is the first)."""
    data_kwargs = kwargs_of(config.data)
    data_name = data_kwargs.pop("name")
    if not (bool(config.get("data_per_seed", False)) and seeds is not None):
        return data_name, md.load(data_name, **data_kwargs), None
    if "seed" not in data_kwargs:
        raise ConfigError(f"config.data_per_seed=True: dataset {data_name!r} takes no seed")
    datas = [md.load(data_name, **{**data_kwargs, "seed": s}) for s in seeds]
    return data_name, datas[0], datas


def _note_short_epochs(config, data: MultiTaskData) -> None:
    steps_per_epoch = len(data.train) // min(int(config.batch_size), len(data.train))
    if steps_per_epoch < 10:
        print(f"note: {steps_per_epoch} train step(s) per epoch (batch_size {config.batch_size}, "
              f"{len(data.train)} training rows); a smaller --config.batch_size gives early stopping more to go on",
              file=sys.stderr)


class SeedFiles:
    """:func:`fit`'s callbacks, writing the ``metrics.jsonl`` / ``steps.jsonl`` / TensorBoard
    files (:class:`mtl.rundir.RunFiles`) of each replica (seed, or point and seed of a sweep)
    into ``folders[i]`` (no folders in processes other than the main one). ``several``: the
    step outputs have a replica axis. A sweep's records say their ``replica``; the files
    leave that out (each point's folders read as those of a run of its own)."""

    def __init__(self, folders: list[pathlib.Path], seed_ids: list[int], several: bool, loss_names,
                 diagnostics: str, tensorboard: bool):
        self.seed_ids, self.several = seed_ids, several
        self.files = [RunFiles(folder, loss_names, diagnostics, tensorboard) for folder in folders]
        self._started = False  # the files are emptied before the first record of a fresh start

    def _start(self) -> None:
        if not self._started:
            for f in self.files:
                f.reset([], 0)
            self._started = True

    def on_resume(self, meta: dict) -> None:
        """Cuts the files back to what the checkpoint holds (``steps.jsonl``: its first
        ``global_step`` lines, written before the interruption)."""
        for f, history in zip(self.files, meta["history"]):
            f.reset([_own(r) for r in history], int(meta["global_step"]))
        self._started = True

    def on_epoch(self, record: dict) -> None:
        self._start()
        i = record["replica"] if "replica" in record else self.seed_ids.index(record["seed"])
        if self.files:
            self.files[i].epoch(_own(record))

    def on_steps(self, epoch: int, first_step: int, outs: dict) -> None:
        self._start()
        for i, f in enumerate(self.files):
            f.step_lines(epoch, first_step, {k: v[i] for k, v in outs.items()} if self.several else outs)

    def close(self) -> None:
        for f in self.files:
            f.close()


def _own(record: dict) -> dict:
    """An epoch record as its run's files hold it (without a sweep's ``replica``)."""
    return {k: v for k, v in record.items() if k != "replica"}


def fit_options(config, workdir: pathlib.Path) -> dict[str, Any]:
    """:func:`fit`'s keyword arguments from the config (with several processes, every process
    takes part in orbax's checkpoints)."""
    seeds = seed_list(config)
    budget = int(config.get("device_memory_budget_mb", 0) or 0)
    every = int(config.get("checkpoint_every", 1))
    return dict(
        optimizer=build_optimizer(config.learning_rate, config.get("weight_decay", 0.0)),
        epochs=int(config.epochs), batch_size=int(config.batch_size),
        seed=int(config.seed) if seeds is None else seeds,
        patience=int(config.patience), eval_batch_size=int(config.eval_batch_size),
        steps_per_call=int(config.steps_per_call),
        rep_grad=bool(config.balancer.rep_grad),
        balance_embeddings=bool(config.balancer.balance_embeddings),
        weight_heads=bool(config.balancer.weight_heads),
        diagnostics=bool(str(config.get("diagnostics", "") or "")), select_by=config.select_by,
        on_nonfinite=config.get("on_nonfinite", "stop"),
        num_devices=int(config.get("num_devices", 0)) or None,
        checkpoint_dir=str(workdir / "checkpoints") if every > 0 else None,
        checkpoint_every=max(every, 1), max_checkpoints=int(config.get("max_checkpoints", 2)),
        handle_signals=True,
        device_memory_budget=budget * 2**20 if budget else None,
    )


def run_info(config, data_name: str, data: MultiTaskData, loss_names) -> dict[str, Any]:
    """What every summary says about the run besides its metrics."""
    return {
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


def write_summaries(workdir: pathlib.Path, folders: dict, runs: list[dict], info: dict,
                    datas: list[MultiTaskData] | None, *, several: bool, main: bool) -> dict:
    """Writes each seed's ``summary.json`` and, with ``several`` seeds, the aggregate one
    (by the main process); returns the summary, or the aggregate with ``per_seed``."""
    summaries = []
    for i, run in enumerate(runs):
        if datas is not None:  # each seed's own generated data
            info = {**info, "protocol": datas[i].info.get("protocol", ""), "data_info": plain(datas[i].info)}
        out = {key: run[key] for key in ("best_epoch", "validation", "test", "epochs_run", "stop_reason",
                                         "select_by", "skipped_steps", "train_seconds", "step_seconds")}
        out = {**out, "num_params": mm.count_params(run["params"]), "seed": run["seed"], **info}
        if main:
            (folders[run["seed"]] / "summary.json").write_text(json.dumps(out, indent=2))
        summaries.append({**out, "history": run["history"]})
    if not several:
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
    if "points" in summary:  # a sweep: one line per point
        return "\n".join([f"sweep of {len(summary['points'])} points ({', '.join(summary['sweep'])}):"]
                         + [f"  {name}: {state}" for name, state in summary["points"].items()])
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
