"""Single-task baseline: one independent network per task (embeddings included).

Each task ``t`` has its own embedding tables, bottom MLP and tower; nothing is
shared, so the summed loss trains T separate models at once (the tasks'
gradients never meet). Used as the single-task-learning (STL) reference of Δm.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mtl.models.base import Model, embedding_offsets, init_mlp, input_dim, stacked_mlp


def single_task(*, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
                hidden: Sequence[int] = (64,), tower_hidden: Sequence[int] = (8,), dropout: float = 0.0) -> Model:
    vocab_sizes = tuple(int(v) for v in vocab_sizes)
    d_in = input_dim(num_numeric, vocab_sizes, embed_dim)
    offsets = embedding_offsets(vocab_sizes)
    sizes = (d_in, *hidden, *tower_hidden, 1)

    def init(key):
        k1, k2 = jax.random.split(key)
        heads = {"net": init_mlp(k2, sizes, stack=(num_tasks,))}
        if vocab_sizes:
            heads["table"] = jax.random.normal(k1, (num_tasks, sum(vocab_sizes), embed_dim)) * 0.01
        return {"embed": {}, "shared": {}, "heads": heads}

    def embed(params, numeric, categorical):
        return {"numeric": numeric.astype(jnp.float32), "categorical": categorical}

    def encode(shared, h, *, train=False, key=None):
        return h

    def decode(heads, z, h, *, train=False, key=None):
        x = jnp.broadcast_to(z["numeric"], (num_tasks, *z["numeric"].shape))
        if vocab_sizes:
            ids = z["categorical"] + offsets[None, :]
            e = jnp.take(heads["table"], ids, axis=1)  # (T, B, F, k)
            x = jnp.concatenate([x, e.reshape(*e.shape[:2], -1)], axis=-1)
        y = stacked_mlp(heads["net"], x, shared_input=False, final_activation=False,
                        dropout_rate=dropout, train=train, key=key)
        return y[..., 0].T

    def last_shared(shared):
        return jax.tree_util.tree_map(lambda _: True, shared)

    return Model(init, embed, encode, decode, last_shared, num_tasks, "single_task")
