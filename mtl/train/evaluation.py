"""Evaluation at the end of an epoch: the model's outputs on each split, and their metrics.

Outputs are computed on the device in fixed-size batches (:func:`make_predict`),
for every seed at once when seeds are vectorised; a training split streamed
from the host is evaluated in host-sized pieces. Metrics
(:func:`evaluate_split`) are computed on the host in the label's original
units; binary decision thresholds are chosen on validation and applied
unchanged to the other splits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mtl import metrics as mtl_metrics
from mtl.data.base import MultiTaskData, Split, original_units
from mtl.models.base import Model
from mtl.train import devices as dev
from mtl.train.state import over_seeds

HOST_PIECE = 1 << 20  # rows of a streamed training split evaluated per device call


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


def evaluate_split(model: Model, data: MultiTaskData, split: str, outputs: np.ndarray,
                   thresholds: dict | None) -> dict:
    """Metrics of one split from the model's outputs: the model's evaluation heads,
    regression outputs and labels back in original units, the users of the split
    for GAUC, and the binary decision thresholds (None: chosen on this split)."""
    s: Split = getattr(data, split)
    labels = s.labels
    outputs = np.asarray(outputs, np.float64)
    if model.eval_view is None:  # undo label standardisation (and transforms) of regression tasks
        outputs, labels = original_units(data.tasks, outputs), original_units(data.tasks, labels)
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


def stack_splits(splits: Sequence[Split]) -> dict[str, np.ndarray]:
    """Per-seed splits of the same shapes as arrays with a leading seed axis."""
    return {k: np.stack([s.as_dict()[k] for s in splits]) for k in splits[0].as_dict()}


class Evaluator:
    """Evaluates the ``splits`` (validation first) of the heads ``names`` (of ``kinds``)
    with the parameters of every seed. ``datas``: one dataset, or one per seed
    (``per_seed``); ``train_device``: the training split already on the device
    (``None`` when it is streamed from the host)."""

    def __init__(self, model: Model, datas: Sequence[MultiTaskData], per_seed: bool, names: Sequence[str],
                 kinds: Sequence[str], splits: Sequence[str], mesh: Mesh, eval_batch_size: int,
                 seeds: Sequence[int] | None, train_device: dict | None):
        self.model, self.datas, self.per_seed, self.mesh = model, list(datas), per_seed, mesh
        self.names, self.kinds, self.splits = tuple(names), tuple(kinds), list(splits)
        data = self.datas[0]
        bs = max(1, min(eval_batch_size, max(len(s) for s in data.splits().values())))
        self._predict = jax.jit(over_seeds(make_predict(model, bs), (0, 0 if per_seed else None), seeds))
        self._device = {s: (train_device if s == "train" and train_device is not None else
                            dev.put_replicated(stack_splits([getattr(d, s) for d in self.datas]) if per_seed else
                                               getattr(data, s).as_dict(), mesh))
                        for s in self.splits if not (s == "train" and train_device is None)}

    def outputs(self, params) -> dict[str, np.ndarray]:
        """``{split: outputs}``, ``(N, T_out)`` or ``(S, N, T_out)`` with a seed axis."""
        return {split: self._outputs(params, split) for split in self.splits}

    def _outputs(self, params, split: str) -> np.ndarray:
        if split in self._device:
            return np.asarray(self._predict(params, self._device[split]))
        host = getattr(self.datas[0], split).as_dict()  # streamed training split: host-sized pieces
        parts = []
        for a in range(0, len(getattr(self.datas[0], split)), HOST_PIECE):
            piece = dev.put_replicated({k: v[a: a + HOST_PIECE] for k, v in host.items()}, self.mesh)
            parts.append(np.asarray(self._predict(params, piece)))
        return np.concatenate(parts, axis=-2)

    def metrics(self, outputs: dict[str, np.ndarray], i: int) -> dict[str, dict]:
        """``{split: {head: {metric: value}}}`` of the ``i``-th dataset from its outputs
        (seed axis already indexed); thresholds are chosen on the first split."""
        data = self.datas[i] if self.per_seed else self.datas[0]
        first, *rest = self.splits
        out = {first: evaluate_split(self.model, data, first, outputs[first], None)}
        thresholds = {h: out[first][h]["threshold"] for h, k in zip(self.names, self.kinds) if k == "binary"}
        for split in rest:
            out[split] = evaluate_split(self.model, data, split, outputs[split], thresholds)
        return out
