"""Flax linen layers the multi-task models are built from.

* :class:`Embed`: numeric features concatenated with one embedding per
  categorical field (all tables laid end to end in one ``table`` parameter, so a
  single gather looks up every field).
* :class:`StackedDense` / :class:`MLP`: dense layers, optionally with ``copies``
  independent sets of weights stacked on a leading axis (experts, towers),
  evaluated with one batched contraction instead of a Python loop.
* :func:`towers`: one MLP tower per task as one stack, outputs ``(B, T)``.

The last layer of every :class:`MLP` is named ``last`` (the others
``hidden_<i>``), so that a model can name the layer that produces its shared
representation (GradNorm's "last shared layer") by path.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn


def torch_linear_init(stack_dims: int = 0):
    """PyTorch's ``nn.Linear`` default kernel initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    ``stack_dims`` leading axes are independent copies (experts, towers, per-task
    gates): they do not count towards ``fan_in``.
    """
    return jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform",
                                                batch_axis=tuple(range(stack_dims)))


def embedding_offsets(vocab_sizes: Sequence[int]) -> np.ndarray:
    """Row offset of each field's table inside the concatenated table."""
    if not len(vocab_sizes):
        return np.zeros((0,), np.int32)
    return np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]]).astype(np.int32)


def input_dim(num_numeric: int, vocab_sizes: Sequence[int], embed_dim: int) -> int:
    """Width of :class:`Embed`'s output."""
    return int(num_numeric) + len(vocab_sizes) * int(embed_dim)


class Embed(nn.Module):
    """``[numeric, e_1(c_1), ..., e_F(c_F)]``: ``(B, F_num + F_cat * embed_dim)``.

    Field ``f`` owns rows ``offsets[f] : offsets[f] + vocab_sizes[f]`` of the
    ``table`` parameter (``N(0, 0.01^2)`` initialisation); a model with no
    categorical fields has no parameters here.
    """

    vocab_sizes: Sequence[int] = ()
    embed_dim: int = 16

    @nn.compact
    def __call__(self, numeric: jax.Array, categorical: jax.Array) -> jax.Array:
        parts = [numeric.astype(jnp.float32)]
        if len(self.vocab_sizes):
            table = self.param("table", jax.nn.initializers.normal(0.01),
                               (int(sum(self.vocab_sizes)), self.embed_dim), jnp.float32)
            ids = categorical + jnp.asarray(embedding_offsets(self.vocab_sizes))[None, :]
            e = jnp.take(table, ids, axis=0)  # (B, F_cat, k)
            parts.append(e.reshape(e.shape[0], -1))
        return jnp.concatenate(parts, axis=-1)


class StackedDense(nn.Module):
    """``copies`` independent dense layers: kernel ``(S, in, out)``, bias ``(S, out)``.

    ``x`` is ``(B, in)`` fed to every copy when ``shared_input`` (one GEMM), else
    ``(S, B, in)``, one input per copy. Returns ``(S, B, out)``.
    """

    copies: int
    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, shared_input: bool) -> jax.Array:
        fan_in = x.shape[-1]
        w = self.param("kernel", torch_linear_init(1), (self.copies, fan_in, self.features), jnp.float32)
        if shared_input:  # one (B, in) @ (in, S * out) GEMM; XLA:CPU runs it far faster than a batched dot
            y = (x @ jnp.moveaxis(w, 0, 1).reshape(fan_in, -1)).reshape(x.shape[0], self.copies, self.features)
            y = jnp.swapaxes(y, 0, 1)
        else:
            y = jnp.einsum("sbi,sio->sbo", x, w)
        if self.use_bias:
            y = y + self.param("bias", jax.nn.initializers.zeros, (self.copies, self.features), jnp.float32)[:, None, :]
        return y


class MLP(nn.Module):
    """Dense layers ``in -> features[0] -> ... -> features[-1]`` with ReLU (and
    dropout) between layers and, with ``final_activation``, after the last.

    ``copies=None``: one MLP on ``x (..., in)``. ``copies=S``: ``S`` stacked
    MLPs (see :class:`StackedDense`); ``shared_input`` says whether ``x`` is one
    ``(B, in)`` input for all copies or ``(S, B, in)``; returns ``(S, B, out)``.
    """

    features: Sequence[int]
    final_activation: bool = True
    dropout: float = 0.0
    copies: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, shared_input: bool = True) -> jax.Array:
        n = len(self.features)
        for i, f in enumerate(self.features):
            name = "last" if i == n - 1 else f"hidden_{i}"
            if self.copies is None:
                x = nn.Dense(f, kernel_init=torch_linear_init(), name=name)(x)
            else:
                x = StackedDense(self.copies, f, name=name)(x, shared_input and i == 0)
            if i < n - 1 or self.final_activation:
                x = nn.relu(x)
                if self.dropout > 0.0:
                    x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return x


def towers(num_tasks: int, hidden: Sequence[int], dropout: float, name: str | None = "towers") -> MLP:
    """``T`` task towers ``in -> hidden -> 1`` as one stacked :class:`MLP`; see :func:`tower_outputs`.

    ``name=None`` inside ``setup`` (where the attribute name is the module's name).
    """
    kwargs = {} if name is None else {"name": name}
    return MLP((*hidden, 1), final_activation=False, dropout=dropout, copies=num_tasks, **kwargs)


def tower_outputs(tower_mlp: MLP, x: jax.Array, train: bool) -> jax.Array:
    """Applies stacked towers to ``x`` (``(B, in)`` shared by every tower, or
    ``(T, B, in)``); returns ``(B, T)``."""
    return tower_mlp(x, train, x.ndim == 2)[..., 0].T


def mix_per_task(g: jax.Array, z: jax.Array) -> jax.Array:
    """``(T, B, d)``: task ``t``'s gate ``g[t]`` (``(B, E)``) over the experts ``z`` (``(B, E, d)``,
    or ``(T, B, E, d)``, one expert stack per task). One ``be,bed->bd`` contraction per task:
    XLA:CPU lowers the task-batched ``tbe,bed->tbd`` to many small dots, 1.4x slower for a whole
    MMoE train step at the census size (``benchmarks/step_time.py`` measures the step)."""
    return jnp.stack([jnp.einsum("be,bed->bd", g[t], z if z.ndim == 3 else z[t]) for t in range(g.shape[0])])
