"""AITM: Adaptive Information Transfer Multi-task (Xi et al., KDD 2021).

For tasks in a conversion funnel (impression -> click -> conversion ...), each
task ``t`` has a tower ``q_t = tower_t(h)`` over the shared embeddings. The
Adaptive Information Transfer module passes what task ``t - 1`` learned to task
``t``: ``p_{t-1} = info_{t-1}(z_{t-1})`` (a dense layer with ReLU) is combined
with ``q_t`` by self-attention over the two vectors ``u in {p_{t-1}, q_t}``,

    w_u = softmax_u( <h2(u), h3(u)> / sqrt(k) ),    z_t = sum_u w_u h1(u)

(``h1, h2, h3``: bias-free dense layers, value / query / key), with
``z_1 = q_1``, and ``y_t = sigmoid(out_t(z_t))``. Training minimises each task's
binary cross-entropy over all impressions plus the behavioural-expectation
calibrator, which penalises a later step predicted likelier than the one
before it:

    L = sum_t BCE(y_t, label_t) + alpha * sum_{t >= 2} R( max(y_t - y_{t-1}, 0) ),

with ``alpha = 0.6`` and ``R`` the sum over the batch in the official code
(``calibrator_reduction="sum"``; ``"mean"`` averages instead). For balancing,
the calibrator term of step ``t`` is part of task ``t``'s loss. Task ``t``'s
label is the product of the labels of steps ``1..t`` (a conversion counts only
after a click, as in the paper's funnel), so a ``click, conversion`` task list
trains the click and the click-and-convert probabilities.

Everything but the embeddings feeds more than one loss (the towers through the
transfer and the calibrator), so it is all the *shared* part (``shared/...``,
no task-specific ``heads``); the representation ``z`` is the logits ``(B, T)``.
Evaluation: each task's AUC over all impressions (the paper's protocol).

Defaults follow the official code: towers 128-64-32; the official dropout
rates (0.1, 0.3, 0.3) are one ``dropout`` rate here (default 0). Differences:
the official attention scores use ``<h2(u), h1(u)>`` (query times *value*);
this follows the paper's ``<h2(u), h3(u)>`` (query times key), as
torch-rechub's AITM does.

Reference: D. Xi, Z. Chen, P. Yan, Y. Zhang, Y. Zhu, F. Zhuang, Y. Chen.
"Modeling the Sequential Dependence among Audience Multi-step Conversions with
Multi-task Learning in Targeted Display Advertising." KDD 2021. Official code:
github.com/adtalos/AITM-torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from mtl.models.base import EvalView
from mtl.models.esmm import NoHeads
from mtl.models.layers import MLP, Embed, StackedDense, torch_linear_init
from mtl.models.module import MultiTaskModule


class TransferAttention(nn.Module):
    """Self-attention over the stacked vectors ``u`` (``(B, U, k)``): returns ``(B, k)``."""

    dim: int

    @nn.compact
    def __call__(self, u):
        dense = lambda name: nn.Dense(self.dim, use_bias=False, kernel_init=torch_linear_init(), name=name)  # noqa: E731
        v, q, k = dense("value")(u), dense("query")(u), dense("key")(u)
        a = jax.nn.softmax(jnp.sum(q * k, axis=-1) / jnp.sqrt(float(self.dim)), axis=-1)  # (B, U)
        return jnp.einsum("bu,buk->bk", a, v)


class TransferNetwork(nn.Module):
    """Towers, information transfer between consecutive tasks and output layers: logits ``(B, T)``."""

    num_tasks: int
    tower_hidden: Sequence[int]
    dropout: float

    @nn.compact
    def __call__(self, h, train: bool = False):
        t, k = self.num_tasks, self.tower_hidden[-1]
        q = MLP(tuple(self.tower_hidden), dropout=self.dropout, copies=t, name="towers")(h, train, True)  # (T, B, k)
        z = [q[0]]
        for i in range(1, t):
            p = nn.relu(nn.Dense(k, kernel_init=torch_linear_init(), name=f"info_{i}")(z[i - 1]))
            if self.dropout > 0:
                p = nn.Dropout(self.dropout, deterministic=not train)(p)
            z.append(TransferAttention(k, name=f"transfer_{i}")(jnp.stack([q[i], p], axis=1)))
        out = StackedDense(t, 1, name="out")(jnp.stack(z), False)  # (T, B, 1)
        return out[..., 0].T


class AITM(MultiTaskModule):
    """AITM over the data's tasks, in funnel order (see the module docstring)."""

    num_tasks: int = 2
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    task_names: Sequence[str] = ("click", "conversion")
    embed_dim: int = 16
    tower_hidden: Sequence[int] = (128, 64, 32)
    dropout: float = 0.0
    calibrator_weight: float = 0.6
    calibrator_reduction: str = "sum"

    def __post_init__(self):
        if self.num_tasks < 2:
            raise ValueError(f"AITM needs at least 2 tasks in funnel order, got {self.num_tasks}")
        if len(self.task_names) != self.num_tasks:
            raise ValueError(f"AITM: {self.num_tasks} tasks but task_names={tuple(self.task_names)}")
        if self.calibrator_reduction not in ("sum", "mean"):
            raise ValueError(f"calibrator_reduction must be 'sum' or 'mean', got {self.calibrator_reduction!r}")
        super().__post_init__()

    def setup(self):
        self.embed = Embed(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = TransferNetwork(self.num_tasks, tuple(self.tower_hidden), self.dropout)
        self.heads = NoHeads()

    def last_shared_layers(self):
        return ("out",)

    def loss_names(self):
        return tuple(self.task_names)

    def task_losses(self, outputs, labels):
        y = jnp.cumprod(labels, axis=1)  # step t counts only after steps 1..t-1
        bce = jnp.mean(optax.sigmoid_binary_cross_entropy(outputs, y), axis=0)  # (T,)
        p = jax.nn.sigmoid(outputs)
        gap = jnp.maximum(p[:, 1:] - p[:, :-1], 0.0)  # (B, T-1)
        reduce = jnp.sum if self.calibrator_reduction == "sum" else jnp.mean
        calibrator = jnp.concatenate([jnp.zeros((1,), bce.dtype), reduce(gap, axis=0)])
        return bce + self.calibrator_weight * calibrator

    def eval_view(self, outputs, labels):
        return EvalView(tuple(self.task_names), ("binary",) * self.num_tasks, np.cumprod(labels, axis=1),
                        np.asarray(outputs))
