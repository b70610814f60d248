"""A user's model written with Flax NNX, plugged in by import path: a DeepFM-style bottom.

    mtl-train --config=experiments/configs/synthetic.py:smoke --workdir=/tmp/fm \
        --config.model.name=experiments.models.deepfm_nnx:DeepFMBottom

The shared bottom is DeepFM's (Guo et al., IJCAI 2017): a factorisation-machine
interaction vector ``0.5 * ((sum_i v_i)^2 - sum_i v_i^2)`` over the field
embeddings, next to a deep MLP over the same input; task towers read both.
NNX modules follow the same protocol as linen ones (attributes ``embed``,
``shared``, ``heads``; methods ``features``, ``encode``, ``decode``), take
``rngs`` in the constructor, and receive ``rngs=nnx.Rngs(dropout=key)`` (or
``None``) as a keyword of ``encode``/``decode`` for dropout. ``mtl`` splits the
module once (``nnx.split``) and trains the parameters as a plain pytree.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx


class FieldVectors(nnx.Module):
    """Per categorical field a ``dim``-vector; numeric features get one learned vector each, scaled by value."""

    def __init__(self, num_numeric: int, vocab_sizes: Sequence[int], dim: int, *, rngs: nnx.Rngs):
        self.vocab_sizes = tuple(int(v) for v in vocab_sizes)
        self.numeric = nnx.Param(nnx.initializers.normal(0.01)(rngs.params(), (max(num_numeric, 1), dim)))
        self.tables = nnx.List([nnx.Embed(v, dim, rngs=rngs) for v in self.vocab_sizes])
        self.num_numeric = num_numeric

    def __call__(self, numeric, categorical):
        vecs = []
        if self.num_numeric:
            vecs.append(numeric[:, :, None] * self.numeric[...][None])  # (B, F_num, k)
        for f, table in enumerate(self.tables):
            vecs.append(table(categorical[:, f])[:, None, :])
        return jnp.concatenate(vecs, axis=1)  # (B, F, k)


class FMAndDeep(nnx.Module):
    def __init__(self, num_fields: int, dim: int, hidden: Sequence[int], dropout: float, *, rngs: nnx.Rngs):
        sizes = (num_fields * dim, *hidden)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, v, train: bool, rngs=None):
        fm = 0.5 * (jnp.square(v.sum(1)) - jnp.square(v).sum(1))  # (B, k)
        deep = v.reshape(v.shape[0], -1)
        for layer in self.layers:
            deep = self.dropout(nnx.relu(layer(deep)), deterministic=not train, rngs=rngs)
        return jnp.concatenate([fm, deep], axis=-1)


class TaskTowers(nnx.Module):
    def __init__(self, num_tasks: int, in_dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.List([nnx.Linear(in_dim, hidden, rngs=rngs) for _ in range(num_tasks)])
        self.out = nnx.List([nnx.Linear(hidden, 1, rngs=rngs) for _ in range(num_tasks)])

    def __call__(self, z):
        return jnp.concatenate([o(nnx.relu(h(z))) for h, o in zip(self.hidden, self.out)], axis=1)


class DeepFMBottom(nnx.Module):
    def __init__(self, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 8,
                 deep_hidden: Sequence[int] = (64, 32), tower_hidden: int = 16, dropout: float = 0.0, *,
                 rngs: nnx.Rngs):
        fields = (1 if num_numeric else 0) * num_numeric + len(vocab_sizes)
        self.embed = FieldVectors(num_numeric, vocab_sizes, embed_dim, rngs=rngs)
        self.shared = FMAndDeep(fields, embed_dim, deep_hidden, dropout, rngs=rngs)
        self.heads = TaskTowers(num_tasks, embed_dim + deep_hidden[-1], tower_hidden, rngs=rngs)

    def features(self, numeric, categorical):
        return self.embed(numeric, categorical)

    def encode(self, h, train, rngs=None):
        return self.shared(h, train, rngs)

    def decode(self, z, h, train, rngs=None):
        return self.heads(z)

    def last_shared_layers(self):
        return (f"layers/{len(self.shared.layers) - 1}",)
