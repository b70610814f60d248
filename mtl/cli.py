"""The command line: ``mtl-train --config=FILE[:ARG] --workdir=DIR [--config.KEY=VALUE ...]``.

This module is the edge where an ``ml_collections`` config becomes typed
arguments for the library (the rest of ``mtl`` never reads a config). It writes

* ``DIR/config.json``: the resolved config;
* ``DIR/metrics.jsonl``: one JSON line per epoch (train losses, mean task
  weights, optional gradient diagnostics, and ``{split: {task: {metric: value}}}``);
* ``DIR/steps.jsonl`` (with ``--config.diagnostics=step``): one line per train
  step with its task losses, weights, gradient norms and pairwise cosines;
* ``DIR/summary.json``: ``best_epoch``, ``validation`` and ``test`` at the best
  validation epoch, ``train_seconds``, and what was run (model, balancer,
  dataset protocol, seed, parameter count).
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import sys
from typing import Any

import optax


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


def build_balancer(name: str, hparams: dict, steps_per_epoch: int, rep_grad: bool = False):
    """Builds a balancer. Facts of the run that some factories take as keywords
    (``steps_per_epoch`` for epoch-based methods such as DWA; ``rep_grad`` for
    methods that behave differently on representation gradients, such as
    GradDrop) are filled in unless the config sets them."""
    import mtl.balancers as mb

    if name not in mb.REGISTRY:
        mb.get(name)  # raises with the list of choices
    params = inspect.signature(mb.REGISTRY[name]).parameters
    context = {"steps_per_epoch": steps_per_epoch, "rep_grad": rep_grad}
    hparams = {**{k: v for k, v in context.items() if k in params}, **hparams}
    return mb.get(name, **hparams)


def build_optimizer(learning_rate: float, weight_decay: float = 0.0) -> optax.GradientTransformation:
    if weight_decay:
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    return optax.adam(learning_rate)


def check_names(config) -> None:
    """Fails fast, before any data is read, on unknown model/balancer/dataset names."""
    import mtl.balancers as mb
    import mtl.data as md
    import mtl.models as mm

    for kind, name, registry in (("model", config.model.name, mm.REGISTRY),
                                 ("balancer", config.balancer.name, mb.REGISTRY),
                                 ("dataset", config.data.name, md.LOADERS)):
        if name not in registry:
            raise ValueError(f"unknown {kind} {name!r} (config.{'data' if kind == 'dataset' else kind}.name); "
                             f"choose one of: {', '.join(sorted(registry))}")


def train_and_evaluate(config, workdir: str | os.PathLike, *, progress: bool = True) -> dict:
    """Runs one experiment described by ``config`` and writes its files to ``workdir``."""
    import mtl.data as md
    import mtl.models as mm
    from mtl.train import NonFiniteLossError, fit

    check_names(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(_plain(config), indent=2, sort_keys=True))

    data_kwargs = _kwargs(config.data)
    data_name = data_kwargs.pop("name")
    data = md.load(data_name, **data_kwargs)
    model = mm.get(config.model.name, num_tasks=len(data.tasks), num_numeric=len(data.numeric_names),
                   vocab_sizes=data.vocab_sizes, **_kwargs(config.model.get("hparams")))
    steps_per_epoch = max(1, len(data.train) // min(config.batch_size, len(data.train)))
    balancer = build_balancer(config.balancer.name, _kwargs(config.balancer.get("hparams")), steps_per_epoch,
                              bool(config.balancer.get("rep_grad", False)))
    diagnostics = str(config.get("diagnostics", "") or "")
    if diagnostics not in ("", "epoch", "step"):
        raise ValueError(f"config.diagnostics must be '', 'epoch' or 'step', got {diagnostics!r}")

    metrics_path = workdir / "metrics.jsonl"
    metrics_file = metrics_path.open("w")

    def on_epoch(record):
        metrics_file.write(json.dumps(record) + "\n")
        metrics_file.flush()

    steps_file = (workdir / "steps.jsonl").open("w") if diagnostics == "step" else None
    names = data.task_names

    def on_steps(epoch, first_step, outs):
        for i in range(len(outs["losses"])):
            rec = {"epoch": epoch, "step": first_step + i,
                   "losses": dict(zip(names, map(float, outs["losses"][i]))),
                   "weights": dict(zip(names, map(float, outs["weights"][i])))}
            if "grad_norms" in outs:
                rec["grad_norms"] = dict(zip(names, map(float, outs["grad_norms"][i])))
                rec["grad_cos"] = {f"{names[a]}|{names[b]}": float(outs["grad_cos"][i][a, b])
                                   for a in range(len(names)) for b in range(a + 1, len(names))}
            steps_file.write(json.dumps(rec) + "\n")

    info = {
        "model": config.model.name,
        "balancer": config.balancer.name,
        "dataset": data_name,
        "protocol": data.info.get("protocol", ""),
        "data_info": _plain(data.info),
        "tasks": {t.name: t.kind for t in data.tasks},
        "seed": int(config.seed),
        "rows": {s: len(getattr(data, s)) for s in ("train", "validation", "test")},
    }
    try:
        summary = fit(
            model, balancer, data,
            optimizer=build_optimizer(config.learning_rate, config.get("weight_decay", 0.0)),
            epochs=int(config.epochs), batch_size=int(config.batch_size), seed=int(config.seed),
            patience=int(config.get("patience", 0)), eval_batch_size=int(config.get("eval_batch_size", 8192)),
            steps_per_call=int(config.get("steps_per_call", 100)),
            rep_grad=bool(config.balancer.get("rep_grad", False)),
            balance_embeddings=bool(config.balancer.get("balance_embeddings", False)),
            weight_heads=bool(config.balancer.get("weight_heads", False)),
            diagnostics=bool(diagnostics), select_by=config.get("select_by", "auto"),
            on_epoch=on_epoch, on_steps=on_steps if steps_file else None, progress=progress,
        )
    except NonFiniteLossError as e:
        metrics_file.close()
        if steps_file:
            steps_file.close()
        (workdir / "summary.json").write_text(json.dumps({**info, "error": str(e), "epoch": e.epoch,
                                                          "step": e.step, "task": e.task}, indent=2))
        raise
    metrics_file.close()
    if steps_file:
        steps_file.close()
    out = {
        "best_epoch": summary["best_epoch"],
        "validation": summary["validation"],
        "test": summary["test"],
        "train_seconds": summary["train_seconds"],
        "epochs_run": summary["epochs_run"],
        "select_by": summary["select_by"],
        "num_params": mm.count_params(summary["params"]),
        **info,
    }
    (workdir / "summary.json").write_text(json.dumps(out, indent=2))
    return {**out, "history": summary["history"]}


def run(argv=None) -> None:
    """Entry point of ``mtl-train`` and ``python -m mtl.train``."""
    from absl import app, flags
    from ml_collections import config_flags

    # Config files import `experiments.configs.common`: make the checkout importable.
    for p in (os.getcwd(), str(pathlib.Path(__file__).resolve().parents[1])):
        if p not in sys.path:
            sys.path.insert(0, p)
    if "config" not in flags.FLAGS:
        config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:arg]).", lock_config=True)
        flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl and summary.json.")
        flags.DEFINE_bool("progress", True, "Show a progress bar with the running task losses.")
        flags.mark_flags_as_required(["config", "workdir"])

    def main(_):
        from mtl.train import NonFiniteLossError

        config = flags.FLAGS.config
        try:
            summary = train_and_evaluate(config, flags.FLAGS.workdir, progress=flags.FLAGS.progress)
        except (ValueError, NonFiniteLossError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        print(format_summary(summary))

    app.run(main, argv=argv)


def format_summary(summary: dict) -> str:
    lines = [f"{summary['model']} + {summary['balancer']} on {summary['dataset']} "
             f"({summary.get('protocol', '')}), seed {summary['seed']}: best epoch {summary['best_epoch']}, "
             f"{summary['train_seconds']:.1f} s training"]
    for split in ("validation", "test"):
        parts = [f"{task}: " + ", ".join(f"{m}={v:.4f}" for m, v in ms.items()) for task, ms in summary[split].items()]
        lines.append(f"  {split:10s} " + " | ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    run()
