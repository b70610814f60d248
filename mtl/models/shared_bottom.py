"""Shared-Bottom (Caruana 1997): one shared MLP feeding one tower per task.

    z = bottom(h),        y_t = tower_t(z).

The representation ``z`` is the bottom's output (parameters
``shared/bottom/...``; its last layer ``shared/bottom/last``).
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import linen as nn

from mtl.models.layers import MLP, Embed
from mtl.models.module import MultiTaskModule, TowerHeads


class Bottom(nn.Module):
    hidden: Sequence[int]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, train: bool = False):
        return MLP(tuple(self.hidden), dropout=self.dropout, name="bottom")(h, train)


class SharedBottom(MultiTaskModule):
    """Args: ``bottom_hidden`` sizes of the shared MLP (113 units match MMoE's
    parameter count on the synthetic benchmark; 16 is the paper's small variant),
    ``tower_hidden`` hidden sizes of each task tower."""

    num_tasks: int
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 16
    bottom_hidden: Sequence[int] = (113,)
    tower_hidden: Sequence[int] = (8,)
    dropout: float = 0.0

    def setup(self):
        self.embed = Embed(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = Bottom(tuple(self.bottom_hidden), self.dropout)
        self.heads = TowerHeads(self.num_tasks, tuple(self.tower_hidden), self.dropout)

    def last_shared_layers(self):
        return ("bottom/last",)
