"""A user's model, plugged in by import path: DCN-v2 as the shared bottom (linen).

    mtl-train --config=experiments/configs/synthetic.py:smoke --workdir=/tmp/dcn \
        --config.model.name=experiments.models.dcn_v2:DCNv2 --config.model.hparams.cross_layers=3

DCN-v2 (Wang et al., WWW 2021) crosses the input with itself explicitly,
``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (full-rank cross layers), next to a
plain deep network; both read the embedded input, and their concatenation is
the representation every task tower reads. Written with plain ``flax.linen``
layers (nothing from ``mtl.models``) to show the protocol a model follows:

* sub-modules named ``embed``, ``shared``, ``heads`` (the parameter tree's parts);
* ``features(numeric, categorical) -> h``, ``encode(h, train) -> z``,
  ``decode(z, h, train) -> (B, T)``;
* optionally ``last_shared_layers()`` (paths inside ``shared`` of the layer that
  produces ``z``: GradNorm needs it).

Constructor fields named ``num_tasks``, ``num_numeric``, ``vocab_sizes`` (and
``task_names``) receive the data's shape; every other field is a hyperparameter
(``--config.model.hparams.<field>``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import linen as nn


class FieldEmbeddings(nn.Module):
    """One ``nn.Embed`` table per categorical field, concatenated with the numeric features."""

    vocab_sizes: Sequence[int]
    dim: int

    @nn.compact
    def __call__(self, numeric, categorical):
        parts = [numeric.astype(jnp.float32)]
        for f, size in enumerate(self.vocab_sizes):
            parts.append(nn.Embed(size, self.dim, name=f"field_{f}")(categorical[:, f]))
        return jnp.concatenate(parts, axis=-1)


class CrossAndDeep(nn.Module):
    """``cross_layers`` full-rank cross layers and a deep MLP side by side."""

    cross_layers: int
    deep_hidden: Sequence[int]

    @nn.compact
    def __call__(self, x0, train: bool = False):
        x = x0
        for l in range(self.cross_layers):
            x = x0 * nn.Dense(x0.shape[-1], name=f"cross_{l}")(x) + x
        deep = x0
        for i, width in enumerate(self.deep_hidden):
            deep = nn.relu(nn.Dense(width, name=f"deep_{i}")(deep))
        return jnp.concatenate([x, deep], axis=-1)


class Towers(nn.Module):
    """One small MLP per task: ``(B, T)``."""

    num_tasks: int
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, z, train: bool = False):
        outs = []
        for t in range(self.num_tasks):
            y = z
            for i, width in enumerate(self.hidden):
                y = nn.relu(nn.Dense(width, name=f"task{t}_{i}")(y))
            outs.append(nn.Dense(1, name=f"task{t}_out")(y)[:, 0])
        return jnp.stack(outs, axis=1)


class DCNv2(nn.Module):
    num_tasks: int
    num_numeric: int
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 8
    cross_layers: int = 2
    deep_hidden: Sequence[int] = (64, 32)
    tower_hidden: Sequence[int] = (16,)

    def setup(self):
        self.embed = FieldEmbeddings(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = CrossAndDeep(self.cross_layers, tuple(self.deep_hidden))
        self.heads = Towers(self.num_tasks, tuple(self.tower_hidden))

    def features(self, numeric, categorical):
        return self.embed(numeric, categorical)

    def encode(self, h, train=False):
        return self.shared(h, train)

    def decode(self, z, h, train=False):
        return self.heads(z, train)

    def last_shared_layers(self):
        return (f"cross_{self.cross_layers - 1}", f"deep_{len(self.deep_hidden) - 1}")

    def __call__(self, numeric, categorical, train=False):
        h = self.features(numeric, categorical)
        return self.decode(self.encode(h, train), h, train)
