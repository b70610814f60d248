"""The training loop: epochs of compiled train steps, evaluation, early stopping.

Each split is moved to the device once. Every epoch draws a permutation of the
training rows on the device; ``steps_per_call`` train steps run inside one
compiled ``lax.scan`` that gathers its batches on the device, so the host only
touches the step outputs (task losses, weights) between calls, where it updates
the progress bar and checks for non-finite losses. The final partial batch of
an epoch is dropped; a partial last call is padded with skipped steps so no
shape ever changes (one compilation per run).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl import metrics as mtl_metrics
from mtl.balancers.base import Balancer
from mtl.data.base import MultiTaskData, Split
from mtl.models.base import Model
from mtl.train.step import grads_template, init_train_state, make_train_step, stack_trees


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite task loss."""

    def __init__(self, epoch: int, step: int, global_step: int, task: str, value: float):
        self.epoch, self.step, self.global_step, self.task, self.value = epoch, step, global_step, task, value
        super().__init__(
            f"non-finite loss {value} for task {task!r} at epoch {epoch}, step {step} of the epoch "
            f"(global step {global_step}); metrics of the epochs before were kept"
        )


def _to_device(split: Split) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v) for k, v in split.as_dict().items()}


def _gather(arrays: dict, idx: jax.Array) -> dict:
    return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}


def make_predict(model: Model, eval_batch_size: int) -> Callable:
    """``predict(params, arrays) -> (N, T)`` outputs, in fixed-size batches on device."""

    @jax.jit
    def predict(params, arrays):
        n = arrays["labels"].shape[0]
        nb = -(-n // eval_batch_size)
        pad = nb * eval_batch_size - n

        def padded(x):
            x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
            return x.reshape(nb, eval_batch_size, *x.shape[1:])

        num, cat = padded(arrays["numeric"]), padded(arrays["categorical"])
        out = jax.lax.map(lambda nc: model.apply(params, nc[0], nc[1], train=False), (num, cat))
        return out.reshape(nb * eval_batch_size, -1)[:n]

    return predict


def selection_score(val_metrics: dict, kinds: Sequence[str], names: Sequence[str], select_by: str) -> float:
    """Higher is better. ``auc``: mean validation AUC of binary tasks;
    ``loss``: minus the mean validation loss (log loss / MSE)."""
    if select_by == "auc":
        return float(np.mean([val_metrics[n]["auc"] for n, k in zip(names, kinds) if k == "binary"]))
    losses = [val_metrics[n]["logloss" if k == "binary" else "mse"] for n, k in zip(names, kinds)]
    return -float(np.mean(losses))


def fit(
    model: Model,
    balancer: Balancer,
    data: MultiTaskData,
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    patience: int = 0,
    eval_batch_size: int = 8192,
    steps_per_call: int = 100,
    rep_grad: bool = False,
    balance_embeddings: bool = False,
    diagnostics: bool = False,
    weight_heads: bool = False,
    select_by: str = "auto",
    on_epoch: Callable[[dict], None] | None = None,
    on_steps: Callable[[int, int, dict], None] | None = None,
    progress: bool = True,
    eval_train: bool = False,
) -> dict[str, Any]:
    """Trains ``model`` with ``balancer`` on ``data`` and evaluates every epoch.

    Args:
      optimizer: optax transformation for all parameters.
      epochs: maximum number of epochs.
      batch_size: training batch size (capped at the training set size).
      seed: seeds parameter initialisation, dropout, shuffling and the balancer.
      patience: stop after this many epochs without validation improvement (0: never).
      steps_per_call: train steps fused into one compiled call.
      select_by: ``"auc"``, ``"loss"`` or ``"auto"`` (AUC when every task is
        binary, else loss); the best validation epoch is reported.
      on_epoch: called with each epoch's record (e.g. to append to metrics.jsonl).
      on_steps: called after every compiled call with ``(epoch, first_global_step,
        outputs)``, the per-step outputs (``losses``, ``weights``, diagnostics)
        as numpy arrays with a leading step axis (per-step logging).
      eval_train: also evaluate on the training split each epoch.
      rep_grad, balance_embeddings, diagnostics, weight_heads: see
        :func:`mtl.train.make_train_step`.

    Returns:
      A summary dict: ``best_epoch``, ``validation`` and ``test`` (``{task:
      {metric: value}}`` at the best epoch), ``train_seconds``, ``history``
      (the epoch records), ``train_compilations`` (how often the compiled
      train call was traced: 1), ``params`` (best parameters) and ``state``.

    Raises:
      NonFiniteLossError: a task loss became NaN/inf; ``on_epoch`` has already
        received every finished epoch.
    """
    names, kinds = data.task_names, data.task_kinds
    if select_by == "auto":
        select_by = "auc" if all(k == "binary" for k in kinds) else "loss"
    if select_by not in ("auc", "loss"):
        raise ValueError(f"select_by must be 'auc', 'loss' or 'auto', got {select_by!r}")
    n = len(data.train)
    if n == 0:
        raise ValueError("the training split is empty")
    batch_size = min(batch_size, n)
    steps = n // batch_size
    chunk = max(1, min(steps_per_call, steps))
    n_chunks = math.ceil(steps / chunk)
    k_batches = balancer.num_batches

    step_fn = make_train_step(model, balancer, optimizer, kinds, rep_grad=rep_grad,
                              balance_embeddings=balance_embeddings, diagnostics=diagnostics,
                              weight_heads=weight_heads)
    root = jax.random.key(seed)
    k_state, k_data = jax.random.split(root)
    train = _to_device(data.train)
    template = None
    if balancer.init_takes_grads_like:
        template = grads_template(model, jax.eval_shape(model.init, k_state), _batch_template(train, batch_size, 1),
                                  rep_grad=rep_grad,
                                  balance_embeddings=balance_embeddings)
    state = init_train_state(model, balancer, optimizer, k_state, grads_like=template)
    evals = {"validation": _to_device(data.validation), "test": _to_device(data.test)}
    if eval_train:
        evals["train"] = train
    predict = make_predict(model, max(1, min(eval_batch_size, max(len(s) for s in data.splits().values()))))

    out_shape = jax.eval_shape(lambda s, b: step_fn(s, b)[1], state,
                               _batch_template(train, batch_size, k_batches))

    @jax.jit
    def epoch_indices(key):
        perm = jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)
        pad = n_chunks * chunk - steps
        perm = jnp.concatenate([perm, jnp.zeros((pad, batch_size), perm.dtype)])
        valid = jnp.arange(n_chunks * chunk) < steps
        return perm.reshape(n_chunks, chunk, batch_size), valid.reshape(n_chunks, chunk)

    @jax.jit
    def run_chunk(state, arrays, idx, valid, key):
        keys = jax.random.split(key, chunk)

        def body(s, inp):
            i, v, k = inp
            batch = _gather(arrays, i)
            if k_batches > 1:
                extra = jax.random.randint(k, (k_batches - 1, batch_size), 0, n)
                batches = [batch] + [_gather(arrays, extra[j]) for j in range(k_batches - 1)]
                batch = stack_trees(batches)
            zeros = jax.tree_util.tree_map(lambda sd: jnp.zeros(sd.shape, sd.dtype), out_shape)
            return jax.lax.cond(v, lambda s_: step_fn(s_, batch), lambda s_: (s_, zeros), s)

        return jax.lax.scan(body, state, (idx, valid, keys))

    history: list[dict] = []
    best_score, best_epoch, best_params, best_eval = -np.inf, -1, state.params, None
    bad_epochs = 0
    train_seconds = 0.0
    global_step = 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        idx, valid = epoch_indices(jax.random.fold_in(k_data, epoch))
        sums: dict[str, np.ndarray] = {}
        bar = _progress(progress, steps, epoch, epochs)
        done = 0
        for c in range(n_chunks):
            state, outs = run_chunk(state, train, idx[c], valid[c], jax.random.fold_in(k_data, 10_000 + epoch * n_chunks + c))
            outs = jax.device_get(outs)
            m = min(chunk, steps - done)
            losses = outs["losses"][:m]
            bad = ~np.isfinite(losses)
            if bad.any():
                s_, t_ = np.argwhere(bad)[0]
                if bar is not None:
                    bar.close()
                raise NonFiniteLossError(epoch, done + int(s_), global_step + done + int(s_), names[t_], float(losses[s_, t_]))
            for k, v in outs.items():
                sums[k] = sums.get(k, 0.0) + v[:m].sum(axis=0)
            if on_steps is not None:
                on_steps(epoch, global_step + done, {k: v[:m] for k, v in outs.items()})
            done += m
            if bar is not None:
                bar.update(m)
                bar.set_postfix({nm: f"{x:.4f}" for nm, x in zip(names, sums["losses"] / done)})
        if bar is not None:
            bar.close()
        global_step += steps
        train_seconds += time.perf_counter() - t0
        means = {k: v / steps for k, v in sums.items()}
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": global_step,
            "train_loss": dict(zip(names, map(float, means["losses"]))),
            "weights": dict(zip(names, map(float, means["weights"]))),
        }
        if "grad_norms" in means:
            record["grad_norms"] = dict(zip(names, map(float, means["grad_norms"])))
            record["grad_cos"] = {f"{names[i]}|{names[j]}": float(means["grad_cos"][i, j])
                                  for i in range(len(names)) for j in range(i + 1, len(names))}
        for split, arrays in evals.items():
            outputs = np.asarray(predict(state.params, arrays))
            labels = getattr(data, split).labels
            record[split] = mtl_metrics.evaluate(labels, outputs, names, kinds)
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        score = selection_score(record["validation"], kinds, names, select_by)
        if score > best_score or best_epoch < 0:
            best_score, best_epoch, best_params = score, epoch, state.params
            best_eval = {s: record[s] for s in evals}
            bad_epochs = 0
        else:
            bad_epochs += 1
            if patience and bad_epochs >= patience:
                break
    return {
        "best_epoch": best_epoch,
        "validation": best_eval["validation"],
        "test": best_eval["test"],
        "select_by": select_by,
        "epochs_run": len(history),
        "train_seconds": train_seconds,
        "history": history,
        "train_compilations": run_chunk._cache_size(),
        "params": best_params,
        "state": state,
    }


def _batch_template(arrays, batch_size, k_batches):
    def shape(x):
        s = (batch_size, *x.shape[1:])
        return jax.ShapeDtypeStruct((k_batches, *s) if k_batches > 1 else s, x.dtype)

    return {k: shape(v) for k, v in arrays.items()}


def _progress(enabled: bool, total: int, epoch: int, epochs: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False, dynamic_ncols=True)
