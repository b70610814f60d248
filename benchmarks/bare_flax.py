"""The simplest program that does a training step's work: a hand-written Flax linen MMoE step.

The reference that ``benchmarks.step_time`` compares mtl's equal-weighting step
with. It is written the way a Flax user would write it, without any of mtl's
modules: embeddings for the categorical fields concatenated with the numeric
inputs, experts as ``nn.vmap``-ped ``Dense`` MLPs (ReLU), per-task softmax gates
without bias (the paper's formula), one ReLU MLP tower per task with one output,
the plain sum of the tasks' binary cross-entropies, ``optax.adam``. Nothing else:
no balancer, no diagnostics, no finite checks, no PRNG key.

    model = BareMMoE(num_tasks=2, vocab_sizes=(), embed_dim=8, num_experts=8,
                     expert_hidden=(256, 128), tower_hidden=(64,))
    state, step = bare_train_step(model, optax.adam(1e-3), batch, jax.random.key(0))
    state, loss = step(state, batch)            # batch: numeric, categorical, labels
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn


class ExpertMLP(nn.Module):
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return x


class BareMMoE(nn.Module):
    num_tasks: int
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 8
    num_experts: int = 8
    expert_hidden: Sequence[int] = (16,)
    tower_hidden: Sequence[int] = (8,)

    @nn.compact
    def __call__(self, numeric, categorical):
        parts = [numeric]
        for f, v in enumerate(self.vocab_sizes):
            parts.append(nn.Embed(v, self.embed_dim, name=f"embed_{f}")(categorical[:, f]))
        h = jnp.concatenate(parts, axis=-1)
        experts = nn.vmap(ExpertMLP, variable_axes={"params": 0}, split_rngs={"params": True},
                          in_axes=None, out_axes=1, axis_size=self.num_experts)(tuple(self.expert_hidden))
        z = experts(h)  # (B, E, d)
        logits = []
        for t in range(self.num_tasks):
            g = nn.softmax(nn.Dense(self.num_experts, use_bias=False, name=f"gate_{t}")(h), axis=-1)
            x = jnp.einsum("be,bed->bd", g, z)
            for i, width in enumerate(self.tower_hidden):
                x = nn.relu(nn.Dense(width, name=f"tower_{t}_{i}")(x))
            logits.append(nn.Dense(1, name=f"tower_{t}_out")(x)[:, 0])
        return jnp.stack(logits, axis=-1)  # (B, T)


def bare_train_step(model: BareMMoE, optimizer: optax.GradientTransformation, batch: dict,
                    key: jax.Array) -> tuple[tuple, Callable]:
    """``(params, opt_state)`` and ``step(state, batch) -> (state, loss)``: the sum of the tasks' BCE."""
    params = model.init(key, batch["numeric"], batch["categorical"])
    state = (params, optimizer.init(params))

    def loss_fn(params, batch):
        logits = model.apply(params, batch["numeric"], batch["categorical"])
        return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean(axis=0).sum()

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return state, step
