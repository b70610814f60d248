"""Shared-Bottom (Caruana 1997): one shared MLP feeding one tower per task.

    z = bottom(h),        y_t = tower_t(z).

The representation ``z`` is the bottom's output.
"""

from __future__ import annotations

from typing import Sequence

import jax

from mtl.models.base import Model, init_embedding, init_mlp, input_dim, last_layer_mask, make_embed, mlp, towers_apply, towers_init


def shared_bottom(*, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (), embed_dim: int = 16,
                  bottom_hidden: Sequence[int] = (113,), tower_hidden: Sequence[int] = (8,),
                  dropout: float = 0.0) -> Model:
    """Args: ``bottom_hidden`` sizes of the shared MLP (113 units match MMoE's
    parameter count on the synthetic benchmark; 16 is the paper's small variant),
    ``tower_hidden`` hidden sizes of each task tower."""
    vocab_sizes = tuple(int(v) for v in vocab_sizes)
    d_in = input_dim(num_numeric, vocab_sizes, embed_dim)

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "embed": init_embedding(k1, vocab_sizes, embed_dim),
            "shared": {"bottom": init_mlp(k2, (d_in, *bottom_hidden))},
            "heads": {"towers": towers_init(k3, num_tasks, bottom_hidden[-1], tower_hidden)},
        }

    def encode(shared, h, *, train=False, key=None):
        return mlp(shared["bottom"], h, final_activation=True, dropout_rate=dropout, train=train, key=key)

    def decode(heads, z, h, *, train=False, key=None):
        return towers_apply(heads["towers"], z, shared_input=True, dropout_rate=dropout, train=train, key=key)

    return Model(init, make_embed(vocab_sizes), encode, decode,
                 lambda shared: last_layer_mask(shared, "bottom"), num_tasks, "shared_bottom")
