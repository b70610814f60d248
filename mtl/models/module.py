"""The base class of the built-in models: three parts and a split forward pass."""

from __future__ import annotations

import jax
from flax import linen as nn


class MultiTaskModule(nn.Module):
    """A linen module with sub-modules ``embed``, ``shared`` and ``heads``
    (assigned in ``setup``) and the protocol methods of
    :mod:`mtl.models.adapters`: ``features``, ``encode``, ``decode``.

    ``heads`` is called as ``heads(z, h, train)``; ``__call__`` is the full
    forward pass, for use as an ordinary Flax module.
    """

    def features(self, numeric: jax.Array, categorical: jax.Array) -> jax.Array:
        return self.embed(numeric, categorical)

    def encode(self, h, train: bool = False):
        return self.shared(h, train)

    def decode(self, z, h, train: bool = False) -> jax.Array:
        return self.heads(z, h, train)

    def __call__(self, numeric: jax.Array, categorical: jax.Array, train: bool = False) -> jax.Array:
        h = self.features(numeric, categorical)
        return self.decode(self.encode(h, train), h, train)


class TowerHeads(nn.Module):
    """One tower per task on a representation shared by every tower (``(B, d)``)."""

    num_tasks: int
    tower_hidden: tuple[int, ...] = (8,)
    dropout: float = 0.0

    @nn.compact
    def __call__(self, z, h, train: bool = False):
        from mtl.models.layers import tower_outputs, towers

        return tower_outputs(towers(self.num_tasks, self.tower_hidden, self.dropout), z, train)
