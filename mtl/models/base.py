"""Model interface and the layers the multi-task models are built from.

Parameters are plain pytrees (nested dicts of arrays); models are pure
functions. A :class:`Model` splits its forward pass at the shared
representation so that the train step can take per-task gradients either of
the shared parameters or of the representation itself:

    h = embed(params["embed"], numeric, categorical)        # input layer (B, F)
    z = encode(params["shared"], h, train=..., key=...)     # shared part -> representation
    y = decode(params["heads"], z, h, train=..., key=...)   # task-specific part -> (B, T)

Every leaf under ``"heads"`` influences exactly one task (towers, MMoE's
per-task gates, PLE's last-level gates); ``"shared"`` holds the dense layers
several tasks depend on (bottom, experts, shared gates); ``"embed"`` holds the
embedding tables (shared by all tasks; by default they get the plain sum of
task gradients).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

# PyTorch's nn.Linear default initialisation (kaiming_uniform with a=sqrt(5)):
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
kernel_init = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class Model(NamedTuple):
    """A multi-task model: pure functions over a parameter pytree.

    Attributes:
      init: ``init(key) -> params`` with top-level keys ``embed``, ``shared``, ``heads``.
      embed: ``embed(embed_params, numeric, categorical) -> h``.
      encode: ``encode(shared_params, h, *, train, key) -> z`` (a pytree).
      decode: ``decode(head_params, z, h, *, train, key) -> outputs (B, T)``.
      last_shared: ``last_shared(shared_params) -> mask`` of booleans marking
        the last shared layer (the one producing ``z``), used by GradNorm.
      num_tasks: T.
      name: registry name.
      gates: optional ``gates(params, numeric, categorical) -> (T, B, E)`` gate
        probabilities for inspection (MoE models only).
    """

    init: Callable[[jax.Array], PyTree]
    embed: Callable[..., jax.Array]
    encode: Callable[..., PyTree]
    decode: Callable[..., jax.Array]
    last_shared: Callable[[PyTree], PyTree]
    num_tasks: int
    name: str
    gates: Callable[..., jax.Array] | None = None

    def apply(self, params, numeric, categorical, *, train: bool = False, key=None) -> jax.Array:
        """The full forward pass: ``(B, T)`` logits / predictions."""
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        h = self.embed(params["embed"], numeric, categorical)
        z = self.encode(params["shared"], h, train=train, key=k1)
        return self.decode(params["heads"], z, h, train=train, key=k2)


# ---------------------------------------------------------------------------
# Input layer
# ---------------------------------------------------------------------------


def init_embedding(key, vocab_sizes: Sequence[int], embed_dim: int) -> dict:
    """One embedding table per categorical field, laid end to end in one array.

    Field ``f`` owns rows ``offsets[f] : offsets[f] + vocab_sizes[f]``; a single
    gather then looks up every field at once.
    """
    total = int(sum(vocab_sizes))
    if total == 0:
        return {}
    return {"table": jax.random.normal(key, (total, embed_dim), jnp.float32) * 0.01}


def embedding_offsets(vocab_sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]).astype(np.int32) if len(vocab_sizes) else np.zeros((0,), np.int32)


def make_embed(vocab_sizes: Sequence[int]) -> Callable:
    """Returns ``embed(params, numeric, categorical) -> (B, F_num + F_cat * k)``."""
    offsets = embedding_offsets(vocab_sizes)

    def embed(params, numeric, categorical):
        parts = [numeric.astype(jnp.float32)]
        if len(vocab_sizes):
            ids = categorical + offsets[None, :]
            e = jnp.take(params["table"], ids, axis=0)  # (B, F_cat, k)
            parts.append(e.reshape(e.shape[0], -1))
        return jnp.concatenate(parts, axis=-1)

    return embed


def input_dim(num_numeric: int, vocab_sizes: Sequence[int], embed_dim: int) -> int:
    return int(num_numeric) + len(vocab_sizes) * int(embed_dim)


# ---------------------------------------------------------------------------
# Dense layers. A "stack" prefix holds several independent copies (experts,
# towers) as leading axes, evaluated with one batched contraction.
# ---------------------------------------------------------------------------


def init_mlp(key, sizes: Sequence[int], stack: tuple[int, ...] = (), bias: bool = True) -> list[dict]:
    """An MLP ``sizes[0] -> ... -> sizes[-1]`` with ``stack`` independent copies."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, sub = jax.random.split(key)
        w = kernel_init(sub, (*stack, fan_in, fan_out), jnp.float32)
        layer = {"w": w}
        if bias:
            layer["b"] = jnp.zeros((*stack, fan_out), jnp.float32)
        layers.append(layer)
    return layers


def dropout(x, rate: float, key, train: bool):
    if not train or rate <= 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _layers(layers, x, affine, *, final_activation, dropout_rate, train, key):
    """``affine(i, layer, x)`` per layer, ReLU (and dropout) between layers and,
    with ``final_activation``, after the last."""
    for i, layer in enumerate(layers):
        x = affine(i, layer, x)
        if i < len(layers) - 1 or final_activation:
            x = jax.nn.relu(x)
            if key is not None:
                key, sub = jax.random.split(key)
                x = dropout(x, dropout_rate, sub, train)
    return x


def mlp(layers: list[dict], x, *, final_activation: bool, dropout_rate: float = 0.0, train=False, key=None):
    """Applies an MLP to ``x (..., fan_in)`` (no stack axes on the weights)."""

    def affine(i, layer, x):
        x = x @ layer["w"]
        return x + layer["b"] if "b" in layer else x

    return _layers(layers, x, affine, final_activation=final_activation, dropout_rate=dropout_rate,
                   train=train, key=key)


def stacked_mlp(layers: list[dict], x, *, shared_input: bool, final_activation: bool,
                dropout_rate: float = 0.0, train=False, key=None):
    """Applies ``S`` stacked MLPs (weights ``(S, in, out)``).

    ``x`` is ``(B, in)`` fed to every copy when ``shared_input`` else ``(S, B, in)``
    (one input per copy). Returns ``(S, B, out)``.
    """

    def affine(i, layer, x):
        x = jnp.einsum("bi,sio->sbo" if i == 0 and shared_input else "sbi,sio->sbo", x, layer["w"])
        return x + layer["b"][:, None, :] if "b" in layer else x

    return _layers(layers, x, affine, final_activation=final_activation, dropout_rate=dropout_rate,
                   train=train, key=key)


def towers_init(key, num_tasks: int, in_dim: int, tower_hidden: Sequence[int]) -> list[dict]:
    """``T`` task towers ``in_dim -> tower_hidden -> 1`` as one stack."""
    return init_mlp(key, (in_dim, *tower_hidden, 1), stack=(num_tasks,))


def towers_apply(layers, x, *, shared_input: bool, dropout_rate=0.0, train=False, key=None):
    """Returns ``(B, T)`` outputs of the stacked towers."""
    y = stacked_mlp(layers, x, shared_input=shared_input, final_activation=False,
                    dropout_rate=dropout_rate, train=train, key=key)  # (T, B, 1)
    return y[..., 0].T


def last_layer_mask(shared: PyTree, key: str) -> PyTree:
    """Mask marking the last layer of the MLP list ``shared[key]``."""
    mask = jax.tree_util.tree_map(lambda _: False, shared)
    layers = mask[key]
    layers[-1] = jax.tree_util.tree_map(lambda _: True, layers[-1])
    return mask


def count_params(params: PyTree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
