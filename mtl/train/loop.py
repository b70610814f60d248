"""The training engine: epochs of compiled steps, evaluation, early stopping,
checkpoints, vectorised seeds and data parallelism.

The whole state of a run is one pytree, :class:`RunState`: the train state
(parameters, optimizer and balancer state, PRNG key), the best parameters and
their validation score, the early-stopping counters, the key that fixes the
data order, and the position in the run. Three capabilities follow from it:

* **Checkpoints** (:mod:`mtl.train.checkpoint`): the state and the host's
  epoch records are saved with orbax at the end of every ``checkpoint_every``
  epochs (and when SIGINT/SIGTERM arrives: the current compiled call finishes
  first); ``fit`` resumes from the latest one, bit for bit (the data order of
  an epoch and the keys of each call are derived from the state).
* **Seeds side by side**: with ``seed=[s1, s2, ...]`` every leaf gets a leading
  seed axis and one compiled program trains all replicas (``jax.vmap``):
  different initialisation, dropout, data order and balancer randomness, same
  data. Early stopping is per seed (a finished seed stops updating; its best
  epoch is kept).
* **Devices**: the batch is sharded over a mesh of ``num_devices`` devices and
  the step is one program over global arrays (:mod:`mtl.train.devices`), so
  per-task gradients are reduced across devices before the balancer combines
  them.

Each epoch draws a permutation of the training rows on the device;
``steps_per_call`` steps run inside one compiled ``lax.scan``; the host touches
only the step outputs between calls. The final partial batch of an epoch is
dropped; a partial last call is padded with skipped steps (one compilation per
run). When the training split is larger than ``device_memory_budget`` bytes it
stays on the host and each call's rows are gathered there and sent to the
device while the previous call computes (same batches, same results).

A non-finite loss, gradient or balancer output is detected inside the program
(:func:`mtl.train.step.make_train_step`); ``on_nonfinite="stop"`` ends the run
after that call with :class:`NonFiniteLossError` (epoch, step, task, method;
the last good checkpoint and the metrics so far are kept), ``"skip"`` drops
such steps and counts them (``skipped_steps`` in the epoch records).
"""

from __future__ import annotations

import concurrent.futures
import math
import signal
import threading
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding

from mtl import metrics as mtl_metrics
from mtl.balancers import with_run_facts
from mtl.balancers.base import Balancer
from mtl.data.base import MultiTaskData, Split
from mtl.models.base import Model
from mtl.train import devices as dev, distributed
from mtl.train.checkpoint import Checkpointer
from mtl.train.step import TrainState, grads_template, init_train_state, make_train_step

PyTree = Any
FORMAT_VERSION = 1


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or balancer output."""

    def __init__(self, epoch: int, step: int, global_step: int, task: str, value: float, method: str = "",
                 seed: int | None = None, what: str = "loss"):
        self.epoch, self.step, self.global_step, self.task, self.value = epoch, step, global_step, task, value
        self.method, self.seed, self.what = method, seed, what
        where = f"{what} of task {task!r}" if what == "loss" else what
        who = f" (balancer {method!r}" + (f", seed {seed})" if seed is not None else ")") if method else ""
        super().__init__(
            f"non-finite {where} ({value}) at epoch {epoch}, step {step} of the epoch (global step {global_step})"
            f"{who}; the step was not applied and the run stopped; metrics and checkpoints of the epochs "
            "before are kept. --config.on_nonfinite=skip skips such steps instead")


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; the current compiled call finished and a checkpoint was written."""

    def __init__(self, signum: int, epoch: int, global_step: int, checkpoint: str | None):
        self.signum, self.epoch, self.global_step, self.checkpoint = signum, epoch, global_step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint written to {checkpoint}; run the same command to resume" if checkpoint else \
            "no checkpoint directory: progress is lost"
        super().__init__(f"interrupted by {name} at epoch {epoch} (global step {global_step}); {where}")


class RunState(NamedTuple):
    """The whole state of a run (a leading seed axis on every leaf when seeds are vectorised).

    Device arrays: ``train`` (:class:`~mtl.train.step.TrainState`), ``best_params``,
    ``data_key`` (fixes the data order: epoch ``e`` is a permutation drawn from
    ``fold_in(data_key, e)``). Host (numpy) arrays: ``best_score`` (float64,
    higher is better), ``best_epoch``, ``bad_epochs`` (epochs since the last
    improvement), ``stopped`` (early-stopped), ``skipped`` (non-finite steps
    dropped), ``epoch`` (epochs finished) and ``chunk`` (compiled calls
    finished in the current epoch).
    """

    train: TrainState
    best_params: PyTree
    data_key: jax.Array
    best_score: np.ndarray
    best_epoch: np.ndarray
    bad_epochs: np.ndarray
    stopped: np.ndarray
    skipped: np.ndarray
    epoch: np.ndarray
    chunk: np.ndarray


def _host(x, dtype, seeds):
    return np.full(() if seeds is None else (len(seeds),), x, dtype)


def make_predict(model: Model, eval_batch_size: int) -> Callable:
    """``predict(params, arrays) -> (N, T_out)`` outputs, in fixed-size batches on device."""

    @jax.jit
    def predict(params, arrays):
        n = arrays["numeric"].shape[0]
        nb = -(-n // eval_batch_size)
        pad = nb * eval_batch_size - n

        def padded(x):
            x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape(nb, eval_batch_size, *x.shape[1:])

        num, cat = padded(arrays["numeric"]), padded(arrays["categorical"])
        out = jax.lax.map(lambda nc: model.apply(params, nc[0], nc[1], train=False), (num, cat))
        return out.reshape(nb * eval_batch_size, -1)[:n]

    return predict


def selection_score(val_metrics: dict, kinds: Sequence[str], names: Sequence[str], select_by: str,
                    mse_scale: Sequence[float] | None = None) -> float:
    """Higher is better. ``auc``: mean validation AUC of binary tasks;
    ``loss``: minus the mean validation loss (log loss / MSE), with each MSE
    divided by ``mse_scale`` (the label variance of a standardised task, so that
    a target in milliseconds weighs like the others, as in training)."""
    if select_by == "auc":
        return float(np.nanmean([val_metrics[n]["auc"] for n, k in zip(names, kinds) if k == "binary"]))
    scale = mse_scale or [1.0] * len(names)
    losses = [val_metrics[n]["logloss"] if k == "binary" else val_metrics[n]["mse"] / c
              for n, k, c in zip(names, kinds, scale)]
    return -float(np.mean(losses))


def evaluate_split(model: Model, data: MultiTaskData, split: str, outputs: np.ndarray,
                   thresholds: dict | None) -> dict:
    """Metrics of one split from the model's outputs: the model's evaluation heads,
    regression outputs and labels back in original units, the users of the split
    for GAUC, and the binary decision thresholds (None: chosen on this split)."""
    s: Split = getattr(data, split)
    labels = s.labels
    outputs = np.asarray(outputs, np.float64)
    if model.eval_view is None:  # undo label standardisation of regression tasks
        mean = np.array([getattr(t, "label_mean", 0.0) for t in data.tasks])
        std = np.array([getattr(t, "label_std", 1.0) for t in data.tasks])
        regression = np.array([t.kind == "regression" for t in data.tasks])
        if regression.any():
            outputs = np.where(regression, outputs * std + mean, outputs)
            labels = np.where(regression, labels * std + mean, labels)
    view = model.evaluation(outputs, labels, data.task_names, data.task_kinds)
    return mtl_metrics.evaluate(view.labels, view.outputs, view.names, view.kinds, thresholds=thresholds,
                                users=getattr(s, "users", None), masks=view.masks)


def eval_heads(model: Model, data: MultiTaskData) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names and kinds of what the evaluation scores (the model's heads or the data's tasks)."""
    if model.eval_view is None:
        return data.task_names, data.task_kinds
    v = data.validation
    k = min(len(v), 2)
    params = jax.eval_shape(model.init, jax.random.key(0))
    out = jax.eval_shape(lambda p: model.apply(p, v.numeric[:k], v.categorical[:k]), params)
    view = model.evaluation(np.zeros(out.shape), v.labels[:k], data.task_names, data.task_kinds)
    return tuple(view.names), tuple(view.kinds)


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
      on_nonfinite: ``"stop"`` or ``"skip"`` (see the module docstring).
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
    data_of = (lambda i: data) if datas is None else (lambda i: datas[i])  # noqa: E731
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
    names, kinds = eval_heads(model, data)
    if select_by == "auto":
        select_by = "auc" if all(k == "binary" for k in kinds) else "loss"
    if select_by not in ("auc", "loss"):
        raise ValueError(f"select_by must be 'auc', 'loss' or 'auto', got {select_by!r}")
    loss_names = tuple(model.loss_names or data.task_names)
    mse_scale = None if model.eval_view is not None else [getattr(t, "label_std", 1.0) ** 2 for t in data.tasks]
    n = len(data.train)
    if n == 0:
        raise ValueError("the training split is empty")
    if epochs < 1 or batch_size < 1 or steps_per_call < 1:
        raise ValueError(f"epochs, batch_size and steps_per_call must be >= 1, got {epochs}, {batch_size}, "
                         f"{steps_per_call}")
    mesh = dev.make_mesh(num_devices)
    batch_size = min(batch_size, n)
    dev.check_batch_size(batch_size, mesh)
    steps = n // batch_size
    chunk = max(1, min(steps_per_call, steps))
    n_chunks = math.ceil(steps / chunk)
    k_batches = balancer.num_batches
    balancer = with_run_facts(balancer, steps_per_epoch=steps, rep_grad=rep_grad)
    halt = on_nonfinite == "stop"

    step_fn = make_train_step(model, balancer, optimizer, data.task_kinds, rep_grad=rep_grad,
                              balance_embeddings=balance_embeddings, diagnostics=diagnostics,
                              weight_heads=weight_heads)
    repl = dev.replicated(mesh)
    multi_device = mesh.size > 1
    train_host = data.train.as_dict() if datas is None else _stack_splits([d.train for d in datas])
    train_bytes = sum(a.nbytes for a in train_host.values())
    streaming = device_memory_budget is not None and train_bytes > device_memory_budget
    train_dev = None if streaming else dev.put_replicated(train_host, mesh)
    batch_like = {k: jax.ShapeDtypeStruct((batch_size, *v.shape[1:]), v.dtype) for k, v in data.train.as_dict().items()}

    template = None
    if balancer.init_takes_grads_like:
        params_shape = jax.eval_shape(model.init, jax.random.key(0))
        template = grads_template(model, params_shape, batch_like, rep_grad=rep_grad,
                                  balance_embeddings=balance_embeddings)

    def init_device(s):
        k_state, k_data = jax.random.split(jax.random.key(s))
        train = init_train_state(model, balancer, optimizer, k_state, grads_like=template)
        return train, train.params, k_data

    if seeds is None:
        train0, best0, dkey0 = jax.jit(init_device, static_argnums=0, out_shardings=repl)(int(seed))
    else:
        train0, best0, dkey0 = jax.jit(jax.vmap(init_device), out_shardings=repl)(jnp.asarray(seeds))
    state = RunState(train0, best0, dkey0, _host(-np.inf, np.float64, seeds), _host(-1, np.int64, seeds),
                     _host(0, np.int64, seeds), _host(False, bool, seeds), _host(0, np.int64, seeds),
                     np.array(0, np.int64), np.array(0, np.int64))

    def vmapped(fn, in_axes):
        return fn if seeds is None else jax.vmap(fn, in_axes=in_axes)

    # --- data order -------------------------------------------------------------------------------
    def epoch_order(data_key, epoch):
        perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)[: steps * batch_size]
        perm = perm.reshape(steps, batch_size)
        pad = n_chunks * chunk - steps
        perm = jnp.concatenate([perm, jnp.zeros((pad, batch_size), perm.dtype)])
        return perm.reshape(n_chunks, chunk, batch_size)

    epoch_order_j = jax.jit(vmapped(epoch_order, (0, None)), out_shardings=repl)
    valid_all = (np.arange(n_chunks * chunk) < steps).reshape(n_chunks, chunk)

    def chunk_rows(idx, data_key, epoch, c):
        """Rows of every step of call ``c``: ``(chunk, K, B)``; the K - 1 extra batches
        of multi-batch balancers are drawn at random from the training split."""
        key = jax.random.fold_in(data_key, 10_000 + epoch * n_chunks + c)
        if k_batches == 1:
            return idx[:, None, :]
        keys = jax.random.split(key, chunk)
        extra = jax.vmap(lambda k: jax.random.randint(k, (k_batches - 1, batch_size), 0, n))(keys)
        return jnp.concatenate([idx[:, None, :], extra.astype(idx.dtype)], axis=1)

    chunk_rows_j = jax.jit(vmapped(chunk_rows, (0, 0, None, None)), out_shardings=repl)

    # --- one compiled call: `chunk` steps ------------------------------------------------------------
    out_shape = jax.eval_shape(lambda s, b: step_fn(s, b)[1], train0 if seeds is None else
                               jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), train0),
                               batch_like if k_batches == 1 else
                               {k: jax.ShapeDtypeStruct((k_batches, *v.shape), v.dtype) for k, v in batch_like.items()})
    spec = dev.batch_spec(mesh, 1 if k_batches > 1 else 0)

    def run_chunk(train, block, positions, valid, stopped):
        def body(carry, inp):
            s, halted = carry
            pos, v = inp
            batch = {k: jnp.take(x, pos if k_batches > 1 else pos[0], axis=0) for k, x in block.items()}
            if multi_device:
                batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, spec))
            zeros = jax.tree_util.tree_map(lambda sd: jnp.zeros(sd.shape, sd.dtype), out_shape)
            active = ~halted & ~stopped
            s_new, out = jax.lax.cond(v, lambda s_: step_fn(s_, batch, active), lambda s_: (s_, zeros), s)
            counted = v & active
            bad = counted & ~out["finite"]
            out = {**out, "counted": counted}
            return (s_new, halted | (bad & halt)), out

        (train, _), outs = jax.lax.scan(body, (train, jnp.array(False)), (positions, valid))
        return train, outs

    per_seed_block = streaming or datas is not None
    run_chunk_j = jax.jit(vmapped(run_chunk, (0, 0 if per_seed_block else None, 0, None, 0)),
                          out_shardings=(repl, repl))

    # --- evaluation ----------------------------------------------------------------------------------
    eval_bs = max(1, min(eval_batch_size, max(len(s) for s in data.splits().values())))
    predict = make_predict(model, eval_bs)
    predict_v = jax.jit(vmapped(predict, (0, None if datas is None else 0)))
    eval_splits = ["validation", "test"] + (["train"] if eval_train else [])
    eval_dev = {s: (train_dev if s == "train" and train_dev is not None else
                    dev.put_replicated(getattr(data, s).as_dict() if datas is None else
                                       _stack_splits([getattr(d, s) for d in datas]), mesh))
                for s in eval_splits if not (streaming and s == "train")}

    def outputs_of(params, split):
        if split in eval_dev:
            return np.asarray(predict_v(params, eval_dev[split]))
        host = getattr(data, split).as_dict()  # streamed training split: evaluate in host-sized pieces
        parts = []
        for a in range(0, n, 1 << 20):
            piece = dev.put_replicated({k: v[a: a + (1 << 20)] for k, v in host.items()}, mesh)
            parts.append(np.asarray(predict_v(params, piece)))
        return np.concatenate(parts, axis=-2)

    update_best_j = jax.jit(vmapped(lambda improved, params, best: jax.tree_util.tree_map(
        lambda p, b: jnp.where(improved, p, b), params, best), (0, 0, 0)), out_shardings=repl)

    # --- host bookkeeping --------------------------------------------------------------------------
    seed_list = [int(seed)] if seeds is None else seeds
    s_count = len(seed_list)
    meta: dict[str, Any] = {"version": FORMAT_VERSION, "history": [[] for _ in seed_list], "best_eval": [None] * s_count,
                            "sums": None, "train_seconds": 0.0, "step_times": [], "global_step": 0,
                            "stop_reason": [""] * s_count}
    ckpt = Checkpointer(checkpoint_dir, max_to_keep=max_checkpoints) if checkpoint_dir else None
    if ckpt is not None and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(ckpt.latest_step(), state)
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"checkpoint in {checkpoint_dir} has format {meta.get('version')}, expected "
                             f"{FORMAT_VERSION}")
        state = state._replace(train=dev.put_replicated(state.train, mesh),
                               best_params=dev.put_replicated(state.best_params, mesh),
                               data_key=dev.put_replicated(state.data_key, mesh))
        if on_resume is not None:
            on_resume(meta)

    def per_seed(x):
        return [x] if seeds is None else list(x)

    def save_checkpoint():
        if ckpt is not None:
            ckpt.save(int(meta["global_step"]), state, meta)

    interrupted: list[int] = []
    old_handlers = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame):
            if interrupted:  # a second signal: stop now
                raise KeyboardInterrupt
            interrupted.append(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, on_signal)

    prefetch = concurrent.futures.ThreadPoolExecutor(1) if streaming else None

    def block_for(rows):
        """Streaming: gather a call's rows on the host and send them to the device."""
        rows = np.asarray(rows)  # (chunk, K, B) or (S, chunk, K, B)
        flat = rows.reshape(rows.shape[0], -1) if seeds is not None else rows.reshape(-1)
        block = {k: v[flat] for k, v in train_host.items()}
        positions = np.arange(flat.shape[-1]).reshape(rows.shape[-3:])
        if seeds is not None:
            positions = np.broadcast_to(positions, rows.shape)
        return dev.put_replicated(block, mesh), positions

    names_t = loss_names
    try:
        while int(state.epoch) < epochs and not bool(np.all(state.stopped)):
            epoch = int(state.epoch)
            t_epoch = time.perf_counter()
            order = epoch_order_j(state.data_key, epoch)
            if meta["sums"] is None or int(state.chunk) == 0:
                meta["sums"] = [dict() for _ in seed_list]
            bar = _progress(progress, steps, epoch, epochs, int(state.chunk) * chunk)
            stopped_dev = jnp.asarray(state.stopped)
            pending = None
            for c in range(int(state.chunk), n_chunks):
                t_call = time.perf_counter()
                idx_c = order[c] if seeds is None else order[:, c]
                rows = chunk_rows_j(idx_c, state.data_key, epoch, c)
                if streaming:
                    if pending is None:
                        pending = prefetch.submit(block_for, rows)
                    block, positions = pending.result()
                    if c + 1 < n_chunks:
                        nxt = order[c + 1] if seeds is None else order[:, c + 1]
                        pending = prefetch.submit(block_for, chunk_rows_j(nxt, state.data_key, epoch, c + 1))
                    else:
                        pending = None
                else:
                    block, positions = train_dev, rows
                train, outs = run_chunk_j(state.train, block, positions, valid_all[c], stopped_dev)
                state = state._replace(train=train, chunk=np.array(c + 1, np.int64))
                outs = jax.device_get(outs)
                _check_finite(outs, seeds, epoch, c * chunk, meta["global_step"], names_t, balancer.name, halt)
                counted = outs.pop("counted")
                finite = outs.pop("finite")
                outs.pop("loss_finite")
                m = int(valid_all[c].sum())
                for i in range(s_count):
                    cnt = counted if seeds is None else counted[i]
                    ok = cnt & (finite if seeds is None else finite[i])
                    sums = meta["sums"][i]
                    sums["_count"] = sums.get("_count", 0) + int(ok.sum())
                    sums["_skipped"] = sums.get("_skipped", 0) + int((cnt & ~ok).sum())
                    for k, v in outs.items():
                        vi = v if seeds is None else v[i]
                        sums[k] = (np.asarray(sums.get(k, 0.0)) + vi[ok].sum(axis=0)).tolist()
                if on_steps is not None:
                    on_steps(epoch, meta["global_step"], {k: (v[:m] if seeds is None else v[:, :m])
                                                          for k, v in outs.items()})
                meta["global_step"] += m
                seconds = time.perf_counter() - t_call
                meta["train_seconds"] += seconds
                if c > 0 or epoch > 0:  # the first call of a run compiles
                    meta["step_times"].append(seconds / max(m, 1))
                if bar is not None:
                    bar.update(m)
                    s0 = meta["sums"][0]
                    if s0.get("_count"):
                        bar.set_postfix({nm: f"{x / s0['_count']:.4f}" for nm, x in zip(names_t, s0["losses"])})
                signum = distributed.agreed_signal(interrupted)  # a signal to one process stops them all
                if signum and (c + 1 < n_chunks):
                    save_checkpoint()
                    raise TrainingInterrupted(signum, epoch, meta["global_step"],
                                              None if ckpt is None else str(ckpt.directory))
            if bar is not None:
                bar.close()

            # --- end of epoch: evaluate every seed still training --------------------------------
            params = state.train.params
            outputs = {split: outputs_of(params, split) for split in eval_splits}
            improved = np.zeros(s_count, bool)
            for i, s in enumerate(seed_list):
                if bool(per_seed(state.stopped)[i]):
                    continue
                record = _epoch_record(epoch, meta["global_step"], meta["sums"][i], names_t, s)
                val_out = outputs["validation"] if seeds is None else outputs["validation"][i]
                record["validation"] = evaluate_split(model, data_of(i), "validation", val_out, None)
                thresholds = {h: record["validation"][h]["threshold"] for h, k in zip(names, kinds)
                              if k == "binary"}
                for split in eval_splits[1:]:
                    out = outputs[split] if seeds is None else outputs[split][i]
                    record[split] = evaluate_split(model, data_of(i), split, out, thresholds)
                record["seconds"] = time.perf_counter() - t_epoch
                meta["history"][i].append(record)
                if on_epoch is not None:
                    on_epoch(record)
                score = selection_score(record["validation"], kinds, names, select_by, mse_scale)
                best = per_seed(state.best_score)[i]
                if score > best or per_seed(state.best_epoch)[i] < 0:
                    improved[i] = True
                    meta["best_eval"][i] = {sp: record[sp] for sp in eval_splits}
                    _set(state.best_score, i, seeds, score)
                    _set(state.best_epoch, i, seeds, epoch)
                    _set(state.bad_epochs, i, seeds, 0)
                else:
                    _set(state.bad_epochs, i, seeds, per_seed(state.bad_epochs)[i] + 1)
                    if patience and per_seed(state.bad_epochs)[i] >= patience:
                        _set(state.stopped, i, seeds, True)
                        meta["stop_reason"][i] = (f"early stopping: no validation improvement for {patience} "
                                                  f"epochs after the best epoch {per_seed(state.best_epoch)[i]}")
                _set(state.skipped, i, seeds, per_seed(state.skipped)[i] + meta["sums"][i].get("_skipped", 0))
            imp = improved[0] if seeds is None else jnp.asarray(improved)
            state = state._replace(best_params=update_best_j(imp, state.train.params, state.best_params),
                                   epoch=np.array(epoch + 1, np.int64), chunk=np.array(0, np.int64))
            meta["sums"] = None
            last = epoch + 1 == epochs or bool(np.all(state.stopped))
            signum = distributed.agreed_signal(interrupted)
            if ckpt is not None and (last or (epoch + 1) % max(1, checkpoint_every) == 0 or signum):
                save_checkpoint()
            if signum and not last:
                raise TrainingInterrupted(signum, epoch + 1, meta["global_step"],
                                          None if ckpt is None else str(ckpt.directory))
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
        if prefetch is not None:
            prefetch.shutdown(wait=False, cancel_futures=True)
        if ckpt is not None:
            ckpt.close()

    runs = []
    step_seconds = float(np.median(meta["step_times"])) if meta["step_times"] else float("nan")
    for i, s in enumerate(seed_list):
        reason = meta["stop_reason"][i] or f"epoch cap reached ({epochs} epochs)"
        runs.append({
            "seed": s,
            "best_epoch": int(per_seed(state.best_epoch)[i]),
            "validation": meta["best_eval"][i]["validation"],
            "test": meta["best_eval"][i]["test"],
            "select_by": select_by,
            "epochs_run": len(meta["history"][i]),
            "stop_reason": reason,
            "skipped_steps": int(per_seed(state.skipped)[i]),
            "train_seconds": meta["train_seconds"],
            "step_seconds": step_seconds,
            "history": meta["history"][i],
            "train_compilations": run_chunk_j._cache_size(),
            "params": state.best_params if seeds is None else jax.tree_util.tree_map(lambda x: x[i],
                                                                                     state.best_params),
        })
    if seeds is None:
        return {**runs[0], "state": state}
    return {"seeds": seed_list, "runs": runs, "state": state}


def _stack_splits(splits: Sequence[Split]) -> dict[str, np.ndarray]:
    """Per-seed splits of the same shapes as arrays with a leading seed axis."""
    return {k: np.stack([s.as_dict()[k] for s in splits]) for k in splits[0].as_dict()}


def _set(arr: np.ndarray, i: int, seeds, value) -> None:
    if seeds is None:
        arr[()] = value
    else:
        arr[i] = value


def _epoch_record(epoch: int, global_step: int, sums: dict, names: Sequence[str], seed: int) -> dict:
    count = max(sums.get("_count", 0), 1)
    means = {k: np.asarray(v) / count for k, v in sums.items() if not k.startswith("_")}
    record: dict[str, Any] = {
        "epoch": epoch,
        "step": global_step,
        "seed": seed,
        "train_loss": dict(zip(names, map(float, means.get("losses", [np.nan] * len(names))))),
        "weights": dict(zip(names, map(float, means.get("weights", [np.nan] * len(names))))),
    }
    if sums.get("_skipped"):
        record["skipped_steps"] = int(sums["_skipped"])
    if "grad_norms" in means:
        record["grad_norms"] = dict(zip(names, map(float, means["grad_norms"])))
        record["grad_cos"] = {f"{names[a]}|{names[b]}": float(means["grad_cos"][a][b])
                              for a in range(len(names)) for b in range(a + 1, len(names))}
    return record


def _check_finite(outs, seeds, epoch, first_step, global_step, names, method, halt):
    """Raises :class:`NonFiniteLossError` for the first rejected step (``halt``)."""
    if not halt:
        return
    bad = outs["counted"] & ~outs["finite"]
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    i, s_ = (None, int(where[0])) if seeds is None else (int(where[0]), int(where[1]))
    pick = (lambda v: v[s_]) if seeds is None else (lambda v: v[i, s_])
    loss_finite = pick(outs["loss_finite"])
    losses = pick(outs["losses"])
    if not loss_finite.all():
        t = int(np.flatnonzero(~loss_finite)[0])
        task, value, what = names[t], float(losses[t]), "loss"
    else:
        task, value, what = "", float("nan"), "gradient or balancer output"
    raise NonFiniteLossError(epoch, first_step + s_, global_step + s_, task, value, method,
                             None if seeds is None else seeds[i], what)


def _progress(enabled: bool, total: int, epoch: int, epochs: int, done: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False,
                dynamic_ncols=True)
