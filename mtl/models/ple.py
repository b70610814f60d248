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

Defaults follow torch-rechub's PLE: 1 shared and 2 task-specific experts, one
level for CGC; sizes are arguments.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mtl.models.base import (Model, kernel_init, init_embedding, init_mlp, input_dim, make_embed,
                             stacked_mlp, towers_apply, towers_init)


def ple(*, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
        num_levels: int = 2, num_shared_experts: int = 1, num_task_experts: int = 2,
        expert_hidden: Sequence[int] = (16,), tower_hidden: Sequence[int] = (8,), dropout: float = 0.0,
        name: str = "ple") -> Model:
    """Progressive Layered Extraction with ``num_levels`` extraction levels."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    vocab_sizes = tuple(int(v) for v in vocab_sizes)
    t_, es, et = num_tasks, num_shared_experts, num_task_experts
    d_in = input_dim(num_numeric, vocab_sizes, embed_dim)
    d_out = expert_hidden[-1]
    embed = make_embed(vocab_sizes)

    def init(key):
        keys = jax.random.split(key, 3 + 4 * num_levels)
        levels = []
        for l in range(num_levels):
            k1, k2, k3, k4 = keys[3 + 4 * l: 7 + 4 * l]
            fan_in = d_in if l == 0 else d_out
            level = {
                "task_experts": init_mlp(k1, (fan_in, *expert_hidden), stack=(t_ * et,)),
                "shared_experts": init_mlp(k2, (fan_in, *expert_hidden), stack=(es,)),
            }
            if l < num_levels - 1:
                level["task_gates"] = kernel_init(k3, (t_, fan_in, et + es), jnp.float32)
                level["shared_gate"] = kernel_init(k4, (fan_in, t_ * et + es), jnp.float32)
            levels.append(level)
        last_in = d_in if num_levels == 1 else d_out
        return {
            "embed": init_embedding(keys[0], vocab_sizes, embed_dim),
            "shared": {"levels": levels},
            "heads": {"gates": kernel_init(keys[1], (t_, last_in, et + es), jnp.float32),
                      "towers": towers_init(keys[2], t_, d_out, tower_hidden)},
        }

    def run_experts(level, x_task, x_shared, first, train, key):
        """Returns task experts (T, B, Et, d) and shared experts (B, Es, d)."""
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        if first:
            te = stacked_mlp(level["task_experts"], x_task, shared_input=True, final_activation=True,
                             dropout_rate=dropout, train=train, key=k1)
        else:
            xt = jnp.repeat(x_task, et, axis=0)  # (T*Et, B, in)
            te = stacked_mlp(level["task_experts"], xt, shared_input=False, final_activation=True,
                             dropout_rate=dropout, train=train, key=k1)
        se = stacked_mlp(level["shared_experts"], x_shared, shared_input=True, final_activation=True,
                         dropout_rate=dropout, train=train, key=k2)
        b = se.shape[1]
        te = jnp.transpose(te.reshape(t_, et, b, d_out), (0, 2, 1, 3))  # (T, B, Et, d)
        return te, jnp.swapaxes(se, 0, 1)

    def mix_task(gate_w, x_task, te, se, first):
        """Task outputs (T, B, d): task t mixes its experts and the shared ones."""
        if first:
            logits = jnp.einsum("bi,tie->tbe", x_task, gate_w)
        else:
            logits = jnp.einsum("tbi,tie->tbe", x_task, gate_w)
        g = jax.nn.softmax(logits, axis=-1)
        experts = jnp.concatenate([te, jnp.broadcast_to(se, (t_, *se.shape))], axis=2)  # (T, B, Et+Es, d)
        return jnp.einsum("tbe,tbed->tbd", g, experts), g

    def encode(shared, h, *, train=False, key=None):
        x_task, x_shared = h, h
        for l, level in enumerate(shared["levels"]):
            first = l == 0
            key, sub = (None, None) if key is None else jax.random.split(key)
            te, se = run_experts(level, x_task, x_shared, first, train, sub)
            if l == num_levels - 1:
                z = {"task_experts": te, "shared_experts": se}
                if not first:
                    z["gate_in"] = x_task
                return z
            new_task, _ = mix_task(level["task_gates"], x_task, te, se, first)
            all_experts = jnp.concatenate([jnp.transpose(te, (1, 0, 2, 3)).reshape(te.shape[1], t_ * et, d_out), se], 1)
            gs = jax.nn.softmax(x_shared @ level["shared_gate"], axis=-1)  # (B, T*Et+Es)
            x_shared = jnp.einsum("be,bed->bd", gs, all_experts)
            x_task = new_task

    def decode(heads, z, h, *, train=False, key=None):
        gate_in = z.get("gate_in", h)
        mixed, _ = mix_task(heads["gates"], gate_in, z["task_experts"], z["shared_experts"], num_levels == 1)
        return towers_apply(heads["towers"], mixed, shared_input=False, dropout_rate=dropout, train=train, key=key)

    def last_shared(shared):
        mask = jax.tree_util.tree_map(lambda _: False, shared)
        last = mask["levels"][-1]
        for k in ("task_experts", "shared_experts"):
            last[k][-1] = jax.tree_util.tree_map(lambda _: True, last[k][-1])
        return mask

    def gates(params, numeric, categorical):
        h = embed(params["embed"], numeric, categorical)
        z = encode(params["shared"], h)
        _, g = mix_task(params["heads"]["gates"], z.get("gate_in", h), z["task_experts"], z["shared_experts"],
                        num_levels == 1)
        return g

    return Model(init, embed, encode, decode, last_shared, num_tasks, name, gates)


def cgc(*, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
        num_shared_experts: int = 1, num_task_experts: int = 2, expert_hidden: Sequence[int] = (16,),
        tower_hidden: Sequence[int] = (8,), dropout: float = 0.0) -> Model:
    """Customized Gate Control: PLE with a single extraction level."""
    return ple(num_tasks=num_tasks, num_numeric=num_numeric, vocab_sizes=vocab_sizes, embed_dim=embed_dim,
               num_levels=1, num_shared_experts=num_shared_experts, num_task_experts=num_task_experts,
               expert_hidden=expert_hidden, tower_hidden=tower_hidden, dropout=dropout, name="cgc")
