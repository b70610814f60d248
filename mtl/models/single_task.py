"""Single-task baseline: one independent network per task (embeddings included).

Each task ``t`` has its own embedding tables, MLP and output layer; nothing is
shared (the parts ``embed`` and ``shared`` have no parameters), so the summed
loss trains T separate models at once (the tasks' gradients never meet). Used
as the single-task-learning (STL) reference of Δm.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from mtl.models.layers import MLP, embedding_offsets
from mtl.models.module import MultiTaskModule


class RawInputs(nn.Module):
    """The ``embed`` part of the single-task model: no parameters, passes the inputs on."""

    @nn.compact
    def __call__(self, numeric, categorical):
        return {"numeric": numeric.astype(jnp.float32), "categorical": categorical}


class Passthrough(nn.Module):
    """The (empty) ``shared`` part of the single-task model."""

    @nn.compact
    def __call__(self, h, train: bool = False):
        return h


class SeparateNetworks(nn.Module):
    """Per task: its own embedding table ``table[t]`` and MLP ``net`` (stacked over tasks)."""

    num_tasks: int
    vocab_sizes: Sequence[int]
    embed_dim: int
    sizes: Sequence[int]
    dropout: float

    @nn.compact
    def __call__(self, z, h, train: bool = False):
        t = self.num_tasks
        x = jnp.broadcast_to(z["numeric"], (t, *z["numeric"].shape))
        if len(self.vocab_sizes):
            table = self.param("table", jax.nn.initializers.normal(0.01),
                               (t, int(sum(self.vocab_sizes)), self.embed_dim), jnp.float32)
            ids = z["categorical"] + jnp.asarray(embedding_offsets(self.vocab_sizes))[None, :]
            e = jnp.take(table, ids, axis=1)  # (T, B, F, k)
            x = jnp.concatenate([x, e.reshape(*e.shape[:2], -1)], axis=-1)
        y = MLP(tuple(self.sizes), final_activation=False, dropout=self.dropout, copies=t, name="net")(x, train, False)
        return y[..., 0].T


class SingleTask(MultiTaskModule):
    """One network per task: embeddings, ``hidden`` layers, ``tower_hidden`` layers, one output."""

    num_tasks: int
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 16
    hidden: Sequence[int] = (64,)
    tower_hidden: Sequence[int] = (8,)
    dropout: float = 0.0

    def setup(self):
        self.embed = RawInputs()
        self.shared = Passthrough()
        self.heads = SeparateNetworks(self.num_tasks, tuple(self.vocab_sizes), self.embed_dim,
                                      (*self.hidden, *self.tower_hidden, 1), self.dropout)
