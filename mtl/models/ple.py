"""CGC and PLE (Tang et al., RecSys 2020): shared and task-specific experts.

Customized Gate Control (one extraction level): task ``t`` mixes its own
experts ``E_t`` and the shared experts ``E_s`` with its own gate,

    x_t = sum_{e in E_t u E_s} softmax(W_t x)_e f_e(x),      y_t = tower_t(x_t).

Progressive Layered Extraction stacks ``num_levels`` such levels. Every level
but the last also has a shared gate over *all* experts whose output is the
shared input of the next level; task experts and task gates of level ``l + 1``
read task ``t``'s output of level ``l``:

    x_t^{l}  = sum_{e in E_t^l u E_s^l} softmax(W_t^l x_t^{l-1})_e f_e(.)
    x_s^{l}  = sum_{e in all experts of level l} softmax(W_s^l x_s^{l-1})_e f_e(.)

with ``x_t^0 = x_s^0 = h``. Gates have no bias. The shared representation
``z`` is the last level's expert outputs (and, for ``num_levels > 1``, the task
inputs its gates read); the last level's gates and the towers are task-specific.
Parameters: ``shared/levels_<l>/{task_experts, shared_experts, task_gates,
shared_gate}``; ``heads/{gates, towers}``.

Defaults follow torch-rechub's PLE: 1 shared and 2 task-specific experts, one
level for CGC; sizes are arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mtl.models.layers import MLP, Embed, input_dim, mix_per_task, torch_linear_init, tower_outputs, towers
from mtl.models.module import MultiTaskModule


def mix_task(gate_w, x_task, task_experts, shared_experts, first: bool):
    """Task outputs ``(T, B, d)`` and gates ``(T, B, Et + Es)``: task ``t`` mixes its
    experts and the shared ones with its gate on its own input (``(B, in)`` at the
    first level, ``(T, B, in)`` after)."""
    t = gate_w.shape[0]
    logits = jnp.einsum("bi,tie->tbe" if first else "tbi,tie->tbe", x_task, gate_w)
    g = jax.nn.softmax(logits, axis=-1)
    experts = jnp.concatenate([task_experts, jnp.broadcast_to(shared_experts, (t, *shared_experts.shape))],
                              axis=2)  # (T, B, Et+Es, d)
    return mix_per_task(g, experts), g


class ExtractionLevel(nn.Module):
    """One extraction level: ``T * Et`` task experts and ``Es`` shared experts,
    plus (except on the last level) task gates and the shared gate."""

    in_dim: int
    num_tasks: int
    num_shared_experts: int
    num_task_experts: int
    expert_hidden: Sequence[int]
    dropout: float
    first: bool
    last: bool

    def setup(self):
        t_, es, et = self.num_tasks, self.num_shared_experts, self.num_task_experts
        self.task_experts = MLP(tuple(self.expert_hidden), dropout=self.dropout, copies=t_ * et)
        self.shared_experts = MLP(tuple(self.expert_hidden), dropout=self.dropout, copies=es)
        if not self.last:
            self.task_gates = self.param("task_gates", torch_linear_init(1), (t_, self.in_dim, et + es), jnp.float32)
            self.shared_gate = self.param("shared_gate", torch_linear_init(), (self.in_dim, t_ * et + es),
                                          jnp.float32)

    def experts(self, x_task, x_shared, train: bool):
        """Task experts ``(T, B, Et, d)`` and shared experts ``(B, Es, d)``."""
        t_, et = self.num_tasks, self.num_task_experts
        if self.first:
            te = self.task_experts(x_task, train, True)
        else:
            te = self.task_experts(jnp.repeat(x_task, et, axis=0), train, False)  # (T*Et, B, in)
        se = self.shared_experts(x_shared, train, True)
        b, d = se.shape[1], se.shape[2]
        te = jnp.transpose(te.reshape(t_, et, b, d), (0, 2, 1, 3))
        return te, jnp.swapaxes(se, 0, 1)

    def __call__(self, x_task, x_shared, train: bool = False):
        """Next level's task inputs ``(T, B, d)`` and shared input ``(B, d)``."""
        te, se = self.experts(x_task, x_shared, train)
        new_task, _ = mix_task(self.task_gates, x_task, te, se, self.first)
        b = se.shape[0]
        all_experts = jnp.concatenate([jnp.transpose(te, (1, 0, 2, 3)).reshape(b, -1, se.shape[-1]), se], 1)
        gs = jax.nn.softmax(x_shared @ self.shared_gate, axis=-1)  # (B, T*Et+Es)
        return new_task, jnp.einsum("be,bed->bd", gs, all_experts)


class Extraction(nn.Module):
    """The stacked levels: ``z = {task_experts, shared_experts[, gate_in]}`` of the last level."""

    in_dim: int
    num_tasks: int
    num_levels: int
    num_shared_experts: int
    num_task_experts: int
    expert_hidden: Sequence[int]
    dropout: float

    def setup(self):
        d_out = self.expert_hidden[-1]
        self.levels = [
            ExtractionLevel(self.in_dim if l == 0 else d_out, self.num_tasks, self.num_shared_experts,
                            self.num_task_experts, tuple(self.expert_hidden), self.dropout, l == 0,
                            l == self.num_levels - 1)
            for l in range(self.num_levels)
        ]

    def __call__(self, h, train: bool = False):
        x_task, x_shared = h, h
        for level in self.levels[:-1]:
            x_task, x_shared = level(x_task, x_shared, train)
        te, se = self.levels[-1].experts(x_task, x_shared, train)
        z = {"task_experts": te, "shared_experts": se}
        if self.num_levels > 1:
            z["gate_in"] = x_task
        return z


class PLEHeads(nn.Module):
    """The last level's task gates ``(T, in, Et + Es)`` and one tower per task."""

    in_dim: int
    num_tasks: int
    num_gate_experts: int
    first: bool
    tower_hidden: Sequence[int]
    dropout: float

    def setup(self):
        self.gates = self.param("gates", torch_linear_init(1), (self.num_tasks, self.in_dim, self.num_gate_experts),
                                jnp.float32)
        self.towers = towers(self.num_tasks, tuple(self.tower_hidden), self.dropout, name=None)

    def mix(self, z, h):
        return mix_task(self.gates, z.get("gate_in", h), z["task_experts"], z["shared_experts"], self.first)

    def __call__(self, z, h, train: bool = False):
        mixed, _ = self.mix(z, h)
        return tower_outputs(self.towers, mixed, train)


class _ExtractionModel(MultiTaskModule):
    """CGC and PLE: the fields they share. Each subclass defines the ``levels``
    property (the number of extraction levels)."""

    num_tasks: int
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 16
    num_shared_experts: int = 1
    num_task_experts: int = 2
    expert_hidden: Sequence[int] = (16,)
    tower_hidden: Sequence[int] = (8,)
    dropout: float = 0.0

    def setup(self):
        if self.levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {self.levels}")
        d_in = input_dim(self.num_numeric, self.vocab_sizes, self.embed_dim)
        self.embed = Embed(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = Extraction(d_in, self.num_tasks, self.levels, self.num_shared_experts,
                                 self.num_task_experts, tuple(self.expert_hidden), self.dropout)
        self.heads = PLEHeads(d_in if self.levels == 1 else self.expert_hidden[-1], self.num_tasks,
                              self.num_task_experts + self.num_shared_experts, self.levels == 1,
                              tuple(self.tower_hidden), self.dropout)

    def last_shared_layers(self):
        last = f"levels_{self.levels - 1}"
        return (f"{last}/task_experts/last", f"{last}/shared_experts/last")

    def gate_probs(self, numeric, categorical):
        h = self.features(numeric, categorical)
        return self.heads.mix(self.encode(h), h)[1]


class PLE(_ExtractionModel):
    """Progressive Layered Extraction with ``num_levels`` extraction levels."""

    num_levels: int = 2

    @property
    def levels(self) -> int:
        return self.num_levels


class CGC(_ExtractionModel):
    """Customized Gate Control: one extraction level (PLE with ``num_levels=1``)."""

    @property
    def levels(self) -> int:
        return 1
