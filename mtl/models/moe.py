"""Mixture-of-experts models: OMoE and MMoE (Ma et al., KDD 2018).

With experts ``f_1..f_E`` (MLPs on the input ``h``):

    OMoE:  y_t = tower_t( sum_e g(h)_e f_e(h) ),      g(h)   = softmax(W_g h)
    MMoE:  y_t = tower_t( sum_e g_t(h)_e f_e(h) ),    g_t(h) = softmax(W_{g,t} h)

Gates have no bias (the paper's formula). OMoE's one gate is shared, so its
representation is the gated mixture; MMoE's gates are task-specific, so its
representation is the stack of expert outputs ``(B, E, d)`` and the gates sit
with the towers. The experts are one stacked MLP (``shared/experts/...``, its
last layer ``shared/experts/last``). Defaults follow the paper's synthetic
setup: 8 experts of 16 units, towers of 8.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mtl.models.layers import MLP, Embed, input_dim, mix_per_task, torch_linear_init, tower_outputs, towers
from mtl.models.module import MultiTaskModule, TowerHeads


class Experts(nn.Module):
    """``E`` expert MLPs on the shared input (one stacked MLP ``experts``): returns ``(B, E, d)``."""

    num_experts: int
    hidden: Sequence[int]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, train: bool = False):
        experts = MLP(tuple(self.hidden), dropout=self.dropout, copies=self.num_experts, name="experts")
        return jnp.swapaxes(experts(h, train), 0, 1)


class GatedExperts(nn.Module):
    """OMoE's shared part: experts mixed by one softmax gate ``(in, E)``: returns ``(B, d)``."""

    in_dim: int
    num_experts: int
    hidden: Sequence[int]
    dropout: float = 0.0

    def setup(self):
        self.experts = MLP(tuple(self.hidden), dropout=self.dropout, copies=self.num_experts)
        self.gate = self.param("gate", torch_linear_init(), (self.in_dim, self.num_experts), jnp.float32)

    def gate_probs(self, h):
        return jax.nn.softmax(h @ self.gate, axis=-1)  # (B, E)

    def __call__(self, h, train: bool = False):
        experts = jnp.swapaxes(self.experts(h, train), 0, 1)
        return jnp.einsum("be,bed->bd", self.gate_probs(h), experts)


class MMoEHeads(nn.Module):
    """Per-task softmax gates ``(T, in, E)`` over the experts, then one tower per task."""

    in_dim: int
    num_tasks: int
    num_experts: int
    tower_hidden: Sequence[int] = (8,)
    dropout: float = 0.0

    def setup(self):
        self.gates = self.param("gates", torch_linear_init(1), (self.num_tasks, self.in_dim, self.num_experts),
                                jnp.float32)
        self.towers = towers(self.num_tasks, tuple(self.tower_hidden), self.dropout, name=None)

    def gate_probs(self, h):
        return jax.nn.softmax(jnp.einsum("bi,tie->tbe", h, self.gates), axis=-1)  # (T, B, E)

    def __call__(self, z, h, train: bool = False):
        g = self.gate_probs(h)  # (T, B, E); one contraction per task (see :func:`mix_per_task`)
        return tower_outputs(self.towers, mix_per_task(g, z), train)


class OMoE(MultiTaskModule):
    """One-gate mixture of experts (the gate is shared by all tasks)."""

    num_tasks: int
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 16
    num_experts: int = 8
    expert_hidden: Sequence[int] = (16,)
    tower_hidden: Sequence[int] = (8,)
    dropout: float = 0.0

    def setup(self):
        self.embed = Embed(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = GatedExperts(input_dim(self.num_numeric, self.vocab_sizes, self.embed_dim), self.num_experts,
                                   tuple(self.expert_hidden), self.dropout)
        self.heads = TowerHeads(self.num_tasks, tuple(self.tower_hidden), self.dropout)

    def last_shared_layers(self):
        return ("experts/last",)

    def gate_probs(self, numeric, categorical):
        g = self.shared.gate_probs(self.features(numeric, categorical))
        return jnp.broadcast_to(g, (self.num_tasks, *g.shape))


class MMoE(MultiTaskModule):
    """Multi-gate mixture of experts: one softmax gate per task over shared experts."""

    num_tasks: int
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 16
    num_experts: int = 8
    expert_hidden: Sequence[int] = (16,)
    tower_hidden: Sequence[int] = (8,)
    dropout: float = 0.0

    def setup(self):
        self.embed = Embed(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = Experts(self.num_experts, tuple(self.expert_hidden), self.dropout)
        self.heads = MMoEHeads(input_dim(self.num_numeric, self.vocab_sizes, self.embed_dim), self.num_tasks,
                               self.num_experts, tuple(self.tower_hidden), self.dropout)

    def last_shared_layers(self):
        return ("experts/last",)

    def gate_probs(self, numeric, categorical):
        return self.heads.gate_probs(self.features(numeric, categorical))
