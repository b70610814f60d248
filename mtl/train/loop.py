"""The training engine: :func:`fit` trains a model with a balancer, evaluates every
epoch and keeps the best epoch, for one seed or several side by side.

``fit`` orchestrates the pieces, each in its own module:

* :mod:`mtl.train.state`: the whole state of a run is one pytree,
  :class:`RunState` (train state, best parameters and score, early-stopping
  counters, the key that fixes the data order, the position in the run), plus
  the host's JSON ``meta`` (epoch records, running sums, wall times). **Seeds
  side by side**: with ``seed=[s1, s2, ...]`` every leaf gets a leading seed
  axis and one compiled program trains all replicas (``jax.vmap``): different
  initialisation, dropout, data order and balancer randomness, same data (or
  one dataset per seed). A hyperparameter sweep (:mod:`mtl.train.sweep`,
  ``replicas=``) is the same axis: one replica per (point, seed), each with its
  own learning rate, weight decay and balancer hyperparameters.
* :mod:`mtl.train.plan`: the epoch plan (steps, compiled calls of
  ``steps_per_call`` steps, the padded last call, the data order, the extra
  batches of multi-batch balancers, a training split streamed from the host
  when larger than ``device_memory_budget``).
* :mod:`mtl.train.epoch`: one epoch of compiled scanned calls; the host
  touches only the step outputs between calls (running means,
  :mod:`mtl.train.means`); non-finite steps stop the run
  (:class:`NonFiniteLossError`) or are skipped and counted.
* :mod:`mtl.train.evaluation` and :mod:`mtl.train.selection`: the metrics of
  every split at the end of an epoch, the best epoch on validation and early
  stopping, per seed (a finished seed stops updating; its best epoch is kept).
* :mod:`mtl.train.guard`: checkpoints every ``checkpoint_every`` epochs and
  on SIGINT/SIGTERM (after the current compiled call; then
  :class:`TrainingInterrupted`); ``fit`` resumes from the latest, bit for bit.
* :mod:`mtl.train.devices`: the batch is sharded over a mesh of
  ``num_devices`` devices and the step is one program over global arrays, so
  per-task gradients are reduced across devices before the balancer combines
  them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl.balancers import with_run_facts
from mtl.balancers.base import Balancer
from mtl.data.base import MultiTaskData
from mtl.models.base import Model
from mtl.train import devices as dev
from mtl.train.epoch import (
    EpochContext,
    NonFiniteLossError,
    make_run_chunk,
    step_output_shape,
    train_epoch,
    train_record,
)
from mtl.train.evaluation import Evaluator, eval_heads, evaluate_split, make_predict, stack_splits
from mtl.train.guard import RunGuard, TrainingInterrupted
from mtl.train.means import StepMeans
from mtl.train.plan import EpochPlan, TrainFeed
from mtl.train.selection import (
    apply_verdict,
    keep_best_params,
    resolve_select_by,
    selection_scales,
    selection_score,
    stop_reason,
)
from mtl.train.state import RunState, init_run_state, new_meta, over_seeds, seed_index
from mtl.train.step import grads_template, make_train_step
from mtl.train.sweep import Replicas, replica_bytes, traced_errors

__all__ = ["NonFiniteLossError", "RunState", "TrainingInterrupted", "evaluate_split", "fit", "make_predict",
           "selection_score"]


def fit(
    model: Model,
    balancer: Balancer,
    data: MultiTaskData | Sequence[MultiTaskData],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    seed: int | Sequence[int] = 0,
    patience: int = 0,
    eval_batch_size: int = 8192,
    steps_per_call: int = 100,
    rep_grad: bool = False,
    balance_embeddings: bool = False,
    diagnostics: bool = False,
    weight_heads: bool = False,
    select_by: str = "auto",
    on_nonfinite: str = "stop",
    num_devices: int | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 1,
    max_checkpoints: int = 2,
    handle_signals: bool = False,
    device_memory_budget: int | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_steps: Callable[[int, int, dict], None] | None = None,
    on_resume: Callable[[dict], None] | None = None,
    progress: bool = True,
    eval_train: bool = False,
    replicas: Replicas | None = None,
) -> dict[str, Any]:
    """Trains ``model`` with ``balancer`` on ``data`` and evaluates every epoch.

    Args:
      data: the dataset; or, with several seeds, one dataset per seed (same
        shapes, e.g. the synthetic generator drawn with each seed): each
        replica then trains and is evaluated on its own data.
      optimizer: optax transformation for all parameters.
      epochs: maximum number of epochs (the cap when early stopping).
      batch_size: global training batch size (capped at the training set size).
      seed: an int for one run; a sequence of ints trains those seeds side by
        side in one program (vectorised). Each seed fixes parameter
        initialisation, dropout, the data order and the balancer's randomness.
      patience: stop (per seed) after this many epochs without validation
        improvement (0: never; train for ``epochs``).
      steps_per_call: train steps fused into one compiled call.
      select_by: ``"auc"``, ``"loss"`` or ``"auto"`` (AUC when every
        evaluation head is binary, else loss); the best validation epoch is reported.
      on_nonfinite: ``"stop"`` or ``"skip"`` (see :mod:`mtl.train.epoch`).
      num_devices: shard batches over this many devices (``None``/0: all).
      checkpoint_dir: where orbax checkpoints go; when it holds one, training
        resumes from the latest (the caller checks that it belongs to the same
        config). ``None``: no checkpoints.
      checkpoint_every: epochs between checkpoints (the last epoch is always saved).
      max_checkpoints: how many checkpoints to keep.
      handle_signals: on SIGINT/SIGTERM finish the current call, write a
        checkpoint and raise :class:`TrainingInterrupted`.
      device_memory_budget: bytes the training split may take on the device;
        a larger split is streamed from the host call by call (``None``: no limit).
      on_epoch: called with each epoch record (``record["seed"]`` says whose).
      on_steps: called after every compiled call with ``(epoch, first_global_step,
        outputs)`` (numpy, leading step axis; with several seeds the seed axis
        comes first) for per-step logging.
      on_resume: called with the restored meta (``history`` per seed,
        ``global_step``) when training resumes from a checkpoint.
      eval_train: also evaluate on the training split each epoch.
      replicas: a hyperparameter sweep (:class:`mtl.train.sweep.Replicas`):
        replica ``r`` trains with seed ``seed[r]`` and its own learning rate,
        weight decay and balancer hyperparameters (``replicas.values``), all in
        one program; ``optimizer`` is then unused and ``balancer`` is the
        first replica's (its static facts hold for all); records carry
        ``"replica": r``, and ``data`` may be one dataset per replica.
      rep_grad, balance_embeddings, diagnostics, weight_heads: see
        :func:`mtl.train.make_train_step`.

    Returns:
      One seed: a summary dict (``best_epoch``, ``validation`` and ``test``
      metrics at that epoch, ``epochs_run``, ``stop_reason``, ``train_seconds``,
      ``step_seconds``, ``history``, ``train_compilations``, ``params`` (best),
      ``state``). Several seeds: ``{"seeds": [...], "runs": [summary, ...],
      "state": ...}``.

    Raises:
      NonFiniteLossError: with ``on_nonfinite="stop"``; ``on_epoch`` has already
        received every finished epoch.
      TrainingInterrupted: a signal arrived (``handle_signals``).
    """
    seeds, datas, data = _seeds_and_data(seed, data, device_memory_budget)
    if replicas is not None and (seeds is None or len(seeds) != replicas.size):
        raise ValueError(f"a sweep of {replicas.size} replicas needs one seed per replica, got {seed}")
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    names, kinds = eval_heads(model, data)
    select_by = resolve_select_by(select_by, kinds)
    n = len(data.train)
    if n == 0:
        raise ValueError("the training split is empty")
    if epochs < 1 or batch_size < 1 or steps_per_call < 1:
        raise ValueError(f"epochs, batch_size and steps_per_call must be >= 1, got {epochs}, {batch_size}, "
                         f"{steps_per_call}")
    mesh = dev.make_mesh(num_devices)
    plan = EpochPlan.make(n, batch_size, steps_per_call, balancer.num_batches)
    dev.check_batch_size(plan.batch_size, mesh)
    balancer = with_run_facts(balancer, steps_per_epoch=plan.steps, rep_grad=rep_grad)
    build = None
    if replicas is not None:  # each replica's optimizer and balancer from the values in its state
        build = _replica_builder(replicas, plan.steps, rep_grad)
        balancer, optimizer = build(replicas.replica(0))
    step_fn = make_train_step(model, balancer, optimizer, data.task_kinds, rep_grad=rep_grad,
                              balance_embeddings=balance_embeddings, diagnostics=diagnostics,
                              weight_heads=weight_heads)
    repl = dev.replicated(mesh)
    feed = TrainFeed(plan, data.train.as_dict() if datas is None else stack_splits([d.train for d in datas]), mesh,
                     seeds, device_memory_budget)
    batch_like = _batch_like(data, plan.batch_size)
    with traced_errors(balancer.name, [] if replicas is None else replicas.balancer_keys()):
        state = _initial_state(model, balancer, optimizer, int(seed) if seeds is None else seeds, batch_like, repl,
                               rep_grad, balance_embeddings, build, None if replicas is None else replicas.values)
        out_shape = step_output_shape(step_fn, state.train, batch_like, plan.k_batches, seeds)
    run_chunk = make_run_chunk(step_fn, out_shape, plan.k_batches, mesh, halt=on_nonfinite == "stop")
    per_seed_block = feed.streaming or datas is not None
    run_chunk = jax.jit(over_seeds(run_chunk, (0, 0 if per_seed_block else None, 0, None, 0), seeds),
                        out_shardings=(repl, repl))
    splits = ["validation", "test"] + (["train"] if eval_train else [])
    evaluator = Evaluator(model, datas or [data], datas is not None, names, kinds, splits, mesh, eval_batch_size,
                          seeds, feed.device)
    ctx = EpochContext(plan, feed, run_chunk, seeds, tuple(model.loss_names or data.task_names), balancer.name,
                       on_nonfinite == "stop", on_steps, progress, epochs)
    run = _Run(seeds, [int(seed)] if seeds is None else seeds, evaluator, keep_best_params(seeds, repl), select_by,
               None if model.eval_view is not None else selection_scales(data),
               patience, ctx.loss_names, on_epoch, replicas is not None)
    guard = RunGuard(checkpoint_dir, every=checkpoint_every, max_checkpoints=max_checkpoints,
                     handle_signals=handle_signals)
    try:
        state, meta = guard.restore(state, new_meta(len(run.seed_list)), mesh, on_resume)
        while int(state.epoch) < epochs and not bool(np.all(state.stopped)):
            t_epoch = time.perf_counter()
            state = train_epoch(ctx, state, meta, guard)
            state = _end_epoch(run, state, meta, t_epoch)
            guard.after_epoch(state, meta, int(state.epoch), int(state.epoch) == epochs or bool(np.all(state.stopped)))
    finally:
        guard.close()
        feed.close()
    return _result(run, state, meta, epochs, run_chunk._cache_size())


def replica_memory(model: Model, balancer: Balancer, data: MultiTaskData, *, replicas: Replicas, batch_size: int,
                   steps_per_call: int, rep_grad: bool = False, balance_embeddings: bool = False,
                   weight_heads: bool = False, diagnostics: bool = False) -> int:
    """Bytes one replica of the sweep ``replicas`` takes on the device, for splitting a sweep
    into programs that fit (:func:`mtl.train.sweep.replica_bytes` of its train step)."""
    plan = EpochPlan.make(len(data.train), batch_size, steps_per_call, balancer.num_batches)
    build = _replica_builder(replicas, plan.steps, rep_grad)
    b0, opt0 = build(replicas.replica(0))
    step_fn = make_train_step(model, b0, opt0, data.task_kinds, rep_grad=rep_grad,
                              balance_embeddings=balance_embeddings, diagnostics=diagnostics, weight_heads=weight_heads)
    batch_like = _batch_like(data, plan.batch_size)
    with traced_errors(balancer.name, replicas.balancer_keys()):
        state = _initial_state(model, b0, opt0, [0], batch_like, None, rep_grad, balance_embeddings, build,
                               {k: v[:1] for k, v in replicas.values.items()})
    train_like = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state.train)
    if plan.k_batches > 1:
        batch_like = {k: jax.ShapeDtypeStruct((plan.k_batches, *v.shape), v.dtype) for k, v in batch_like.items()}
    return replica_bytes(step_fn, train_like, batch_like, train_like.params)


def _replica_builder(replicas: Replicas, steps_per_epoch: int, rep_grad: bool) -> Callable:
    """``hp -> (balancer, optimizer)`` of one replica, carrying its values in their states."""
    bind = lambda b: with_run_facts(b, steps_per_epoch=steps_per_epoch, rep_grad=rep_grad)  # noqa: E731
    return lambda hp: (replicas.balancer(hp, bind), replicas.optimizer(hp))


def _batch_like(data: MultiTaskData, batch_size: int) -> dict:
    """Shapes of one training batch."""
    return {k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), v.dtype) for k, v in data.train.as_dict().items()}


class _Run(NamedTuple):
    """What stays fixed over a run, for the end of each epoch and the result."""

    seeds: Sequence[int] | None
    seed_list: list[int]
    evaluator: Evaluator
    keep_best: Callable
    select_by: str
    mse_scale: list[float] | None
    patience: int
    loss_names: tuple[str, ...]
    on_epoch: Callable[[dict], None] | None
    sweep: bool = False


def _seeds_and_data(seed, data, device_memory_budget):
    """``(seeds, datas, data)``: the seed list (``None``: one seed), the per-seed
    datasets (``None``: one dataset) and the first dataset; checks they agree."""
    seeds = None if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
    if seeds is not None and len(seeds) == 0:
        raise ValueError("seed: give an int or a non-empty list of ints")
    datas = list(data) if isinstance(data, (list, tuple)) else None
    if datas is not None:
        if seeds is None or len(datas) != len(seeds):
            raise ValueError(f"one dataset per seed: {len(datas)} datasets for seeds {seeds}")
        shapes = {tuple((k, a.shape) for sp in d.splits().values() for k, a in sp.as_dict().items()) for d in datas}
        if len(shapes) != 1:
            raise ValueError("the per-seed datasets must have the same shapes")
        if device_memory_budget is not None:
            raise ValueError("per-seed datasets are kept on the device; device_memory_budget does not apply")
        data = datas[0]
    return seeds, datas, data


def _initial_state(model, balancer, optimizer, seed, batch_like, sharding, rep_grad, balance_embeddings,
                   build=None, values=None) -> RunState:
    """The run state before the first epoch; balancers whose state is shaped like the
    balanced gradients get their template; a sweep's replicas are built by ``build``
    from their ``values``."""
    template = None
    if balancer.init_takes_grads_like:
        params_shape = jax.eval_shape(model.init, jax.random.key(0))
        template = grads_template(model, params_shape, batch_like, rep_grad=rep_grad,
                                  balance_embeddings=balance_embeddings)
    return init_run_state(model, balancer, optimizer, seed, sharding, grads_like=template, replicas=build,
                          values=values)


def _end_epoch(run: _Run, state: RunState, meta: dict, t_epoch: float) -> RunState:
    """Evaluates every seed still training, records the epoch, selects and early-stops."""
    epoch = int(state.epoch)
    ev = run.evaluator
    outputs = ev.outputs(state.train.params)
    improved = np.zeros(len(run.seed_list), bool)
    for i, s in enumerate(run.seed_list):
        ix = seed_index(i, run.seeds)
        if bool(state.stopped[ix]):
            continue
        means = StepMeans(meta["sums"][i])
        metrics = ev.metrics({split: out[ix] for split, out in outputs.items()}, i)
        record = {**train_record(epoch, meta["global_step"], means, run.loss_names, s), **metrics,
                  "seconds": time.perf_counter() - t_epoch, **({"replica": i} if run.sweep else {})}
        meta["history"][i].append(record)
        if run.on_epoch is not None:
            run.on_epoch(record)
        score = selection_score(record["validation"], ev.kinds, ev.names, run.select_by, run.mse_scale)
        improved[i] = apply_verdict(state, meta, i, run.seeds, epoch, score, metrics, run.patience)
        state.skipped[ix] += means.skipped
    meta["sums"] = None
    imp = improved[0] if run.seeds is None else jnp.asarray(improved)
    return state._replace(best_params=run.keep_best(imp, state.train.params, state.best_params),
                          epoch=np.array(epoch + 1, np.int64), chunk=np.array(0, np.int64))


def _result(run: _Run, state: RunState, meta: dict, epochs: int, compilations: int) -> dict[str, Any]:
    """``fit``'s return value (see there)."""
    step_seconds = float(np.median(meta["step_times"])) if meta["step_times"] else float("nan")
    runs = []
    for i, s in enumerate(run.seed_list):
        ix = seed_index(i, run.seeds)
        runs.append({
            "seed": s,
            "best_epoch": int(state.best_epoch[ix]),
            "validation": meta["best_eval"][i]["validation"],
            "test": meta["best_eval"][i]["test"],
            "select_by": run.select_by,
            "epochs_run": len(meta["history"][i]),
            "stop_reason": stop_reason(meta["stop_reason"][i], epochs),
            "skipped_steps": int(state.skipped[ix]),
            "train_seconds": meta["train_seconds"],
            "step_seconds": step_seconds,
            "history": meta["history"][i],
            "train_compilations": compilations,
            "params": state.best_params if run.seeds is None else jax.tree_util.tree_map(lambda x: x[i],
                                                                                         state.best_params),
        })
    if run.seeds is None:
        return {**runs[0], "state": state}
    return {"seeds": run.seed_list, "runs": runs, "state": state}
