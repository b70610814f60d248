"""Mixture-of-experts models: OMoE and MMoE (Ma et al., KDD 2018).

With experts ``f_1..f_E`` (MLPs on the input ``h``):

    OMoE:  y_t = tower_t( sum_e g(h)_e f_e(h) ),      g(h)   = softmax(W_g h)
    MMoE:  y_t = tower_t( sum_e g_t(h)_e f_e(h) ),    g_t(h) = softmax(W_{g,t} h)

Gates have no bias (the paper's formula). OMoE's one gate is shared, so its
representation is the gated mixture; MMoE's gates are task-specific, so its
representation is the stack of expert outputs ``(B, E, d)`` and the gates sit
with the towers. Defaults follow the paper's synthetic setup: 8 experts of 16
units, towers of 8.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mtl.models.base import (Model, kernel_init, init_embedding, init_mlp, input_dim, last_layer_mask, make_embed,
                             stacked_mlp, towers_apply, towers_init)


def _experts_mask(shared):
    return last_layer_mask(shared, "experts")


def _experts(shared, h, dropout, train, key):
    out = stacked_mlp(shared["experts"], h, shared_input=True, final_activation=True,
                      dropout_rate=dropout, train=train, key=key)  # (E, B, d)
    return jnp.swapaxes(out, 0, 1)  # (B, E, d)


def omoe(*, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
         num_experts: int = 8, expert_hidden: Sequence[int] = (16,), tower_hidden: Sequence[int] = (8,),
         dropout: float = 0.0) -> Model:
    """One-gate mixture of experts (the gate is shared by all tasks)."""
    vocab_sizes = tuple(int(v) for v in vocab_sizes)
    d_in = input_dim(num_numeric, vocab_sizes, embed_dim)
    embed = make_embed(vocab_sizes)

    def init(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        return {
            "embed": init_embedding(k1, vocab_sizes, embed_dim),
            "shared": {"experts": init_mlp(k2, (d_in, *expert_hidden), stack=(num_experts,)),
                       "gate": kernel_init(k3, (d_in, num_experts), jnp.float32)},
            "heads": {"towers": towers_init(k4, num_tasks, expert_hidden[-1], tower_hidden)},
        }

    def encode(shared, h, *, train=False, key=None):
        experts = _experts(shared, h, dropout, train, key)
        g = jax.nn.softmax(h @ shared["gate"], axis=-1)  # (B, E)
        return jnp.einsum("be,bed->bd", g, experts)

    def decode(heads, z, h, *, train=False, key=None):
        return towers_apply(heads["towers"], z, shared_input=True, dropout_rate=dropout, train=train, key=key)

    def gates(params, numeric, categorical):
        h = embed(params["embed"], numeric, categorical)
        g = jax.nn.softmax(h @ params["shared"]["gate"], axis=-1)
        return jnp.broadcast_to(g, (num_tasks, *g.shape))

    return Model(init, embed, encode, decode, _experts_mask, num_tasks, "omoe", gates)


def mmoe(*, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
         num_experts: int = 8, expert_hidden: Sequence[int] = (16,), tower_hidden: Sequence[int] = (8,),
         dropout: float = 0.0) -> Model:
    """Multi-gate mixture of experts: one softmax gate per task over shared experts."""
    vocab_sizes = tuple(int(v) for v in vocab_sizes)
    d_in = input_dim(num_numeric, vocab_sizes, embed_dim)
    embed = make_embed(vocab_sizes)

    def init(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        return {
            "embed": init_embedding(k1, vocab_sizes, embed_dim),
            "shared": {"experts": init_mlp(k2, (d_in, *expert_hidden), stack=(num_experts,))},
            "heads": {"gates": kernel_init(k3, (num_tasks, d_in, num_experts), jnp.float32),
                      "towers": towers_init(k4, num_tasks, expert_hidden[-1], tower_hidden)},
        }

    def encode(shared, h, *, train=False, key=None):
        return _experts(shared, h, dropout, train, key)  # (B, E, d)

    def gate_probs(gate_w, h):
        return jax.nn.softmax(jnp.einsum("bi,tie->tbe", h, gate_w), axis=-1)  # (T, B, E)

    def decode(heads, z, h, *, train=False, key=None):
        g = gate_probs(heads["gates"], h)
        mixed = jnp.einsum("tbe,bed->tbd", g, z)
        return towers_apply(heads["towers"], mixed, shared_input=False, dropout_rate=dropout, train=train, key=key)

    def gates(params, numeric, categorical):
        return gate_probs(params["heads"]["gates"], embed(params["embed"], numeric, categorical))

    return Model(init, embed, encode, decode, _experts_mask, num_tasks, "mmoe", gates)
