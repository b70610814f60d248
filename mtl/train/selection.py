"""Model selection and early stopping, per seed.

Each epoch's validation metrics give one score, higher is better
(:func:`selection_score`): the mean validation AUC when every evaluation head
is binary, else minus the mean validation loss. An epoch whose score beats the
best so far (or the first epoch) becomes the best epoch: its parameters and
metrics are kept. ``patience`` epochs in a row without improvement stop that
seed (:func:`judge`); a stopped seed stops updating while the others train
on. The summary's ``stop_reason`` says which of the two ends a run reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mtl.data.base import MultiTaskData
from mtl.train.state import RunState, over_seeds, seed_index

PyTree = Any


def resolve_select_by(select_by: str, kinds: Sequence[str]) -> str:
    """``"auto"`` -> ``"auc"`` when every head is binary, else ``"loss"``."""
    if select_by == "auto":
        select_by = "auc" if all(k == "binary" for k in kinds) else "loss"
    if select_by not in ("auc", "loss"):
        raise ValueError(f"select_by must be 'auc', 'loss' or 'auto', got {select_by!r}")
    return select_by


def selection_score(val_metrics: dict, kinds: Sequence[str], names: Sequence[str], select_by: str,
                    mse_scale: Sequence[float] | None = None) -> float:
    """Higher is better. ``auc``: mean validation AUC of binary tasks;
    ``loss``: minus the mean validation loss (log loss / MSE), with each MSE
    divided by ``mse_scale`` (:func:`selection_scales`: the training label variance,
    so that a target in milliseconds weighs like the others, as in training)."""
    if select_by == "auc":
        return float(np.nanmean([val_metrics[n]["auc"] for n, k in zip(names, kinds) if k == "binary"]))
    scale = mse_scale or [1.0] * len(names)
    losses = [val_metrics[n]["logloss"] if k == "binary" else val_metrics[n]["mse"] / c
              for n, k, c in zip(names, kinds, scale)]
    return -float(np.mean(losses))


def selection_scales(data: MultiTaskData) -> list[float]:
    """What each task's validation MSE is divided by in the selection score: the variance of its
    training labels in the units the MSE is reported in (``label_std ** 2`` for a standardised
    label; computed from the training labels when a transform such as ``log1p`` sits in between),
    so that every regression task enters as its fraction of unexplained variance."""
    scales = []
    for t, task in enumerate(data.tasks):
        if task.kind == "regression" and getattr(task, "label_transform", ""):
            scales.append(float(np.var(task.to_original_units(np.asarray(data.train.labels[:, t], np.float64)))))
        else:
            scales.append(getattr(task, "label_std", 1.0) ** 2)
    return scales


class Verdict(NamedTuple):
    """What an epoch's score means for its seed: a new best, the epochs since the
    last improvement, and whether the seed stops now."""

    improved: bool
    bad_epochs: int
    stop: bool


def judge(score: float, best_score: float, best_epoch: int, bad_epochs: int, patience: int) -> Verdict:
    """The verdict on an epoch scoring ``score`` after the best ``best_score`` (at
    ``best_epoch``, -1 before the first epoch) and ``bad_epochs`` epochs without
    improvement; ``patience`` 0 never stops."""
    if score > best_score or best_epoch < 0:
        return Verdict(True, 0, False)
    return Verdict(False, bad_epochs + 1, bool(patience) and bad_epochs + 1 >= patience)


def early_stop_reason(patience: int, best_epoch: int) -> str:
    return f"early stopping: no validation improvement for {patience} epochs after the best epoch {best_epoch}"


def stop_reason(reason: str, epochs: int) -> str:
    """The run's stop reason: the early stop's, else the epoch cap's."""
    return reason or f"epoch cap reached ({epochs} epochs)"


def apply_verdict(state: RunState, meta: dict, i: int, seeds: Sequence[int] | None, epoch: int, score: float,
                  metrics: dict, patience: int) -> bool:
    """Writes seed ``i``'s verdict on ``epoch`` (its ``{split: metrics}`` scoring ``score``)
    into the host arrays of ``state`` and into ``meta`` (best metrics, stop reason);
    returns whether the epoch is a new best."""
    ix = seed_index(i, seeds)
    v = judge(score, state.best_score[ix], state.best_epoch[ix], state.bad_epochs[ix], patience)
    state.bad_epochs[ix] = v.bad_epochs
    if v.improved:
        meta["best_eval"][i] = metrics
        state.best_score[ix] = score
        state.best_epoch[ix] = epoch
    if v.stop:
        state.stopped[ix] = True
        meta["stop_reason"][i] = early_stop_reason(patience, int(state.best_epoch[ix]))
    return v.improved


def keep_best_params(seeds: Sequence[int] | None, sharding) -> Callable[[Any, PyTree, PyTree], PyTree]:
    """``(improved, params, best) -> best'``: each seed keeps its best parameters."""
    def keep(improved, params, best):
        return jax.tree_util.tree_map(lambda p, b: jnp.where(improved, p, b), params, best)

    return jax.jit(over_seeds(keep, (0, 0, 0), seeds), out_shardings=sharding)
