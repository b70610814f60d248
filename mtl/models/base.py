"""The model value the train step uses, and what every model shares.

A model is a Flax module (linen, or NNX through :func:`mtl.models.from_nnx`)
with three named parts and a forward pass split at the shared representation,
so that the train step can take per-task gradients either of the shared
parameters or of the representation itself:

    h = features(numeric, categorical)    # part "embed": the input layer    (B, F)
    z = encode(h, train)                  # part "shared": the shared network -> representation z
    y = decode(z, h, train)               # part "heads": task-specific layers -> (B, T)

The parameter tree's top-level keys are the part names: every leaf under
``"heads"`` influences exactly one task (towers, MMoE's per-task gates, PLE's
last-level gates); ``"shared"`` holds the dense layers several tasks depend on
(bottom, experts, shared gates); ``"embed"`` holds the embedding tables (shared
by all tasks; by default they get the plain sum of task gradients).

:func:`mtl.models.from_linen` turns such a module into a :class:`Model`: pure
functions over the parameter pytree (``init``, ``embed``, ``encode``,
``decode``), which is what a jitted, vmapped, sharded train step and a
checkpoint want. The step never sees the module.

A model may also define its own training losses and evaluation heads (ESMM's
CTCVR loss over all impressions and CVR AUC on clicked impressions only);
without them every label column is one task with binary cross-entropy or
squared error, evaluated on every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any

#: The three parts of every model's parameter tree, in forward order.
PARTS = ("embed", "shared", "heads")


class EvalView(NamedTuple):
    """What the evaluation scores: one column per evaluation head.

    Attributes:
      names: head names (metrics are reported under them).
      kinds: ``"binary"`` (``outputs`` are logits) or ``"regression"`` per head.
      labels: ``(N, H)`` labels.
      outputs: ``(N, H)`` logits / predictions.
      masks: optional ``{name: (N,) bool}``: the rows a head is scored on (e.g.
        conversion on clicked impressions only); every row when absent.
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    labels: np.ndarray
    outputs: np.ndarray
    masks: dict[str, np.ndarray] | None = None


class Model(NamedTuple):
    """A multi-task model as pure functions over a parameter pytree.

    Attributes:
      init: ``init(key) -> params`` with top-level keys ``embed``, ``shared``, ``heads``.
      embed: ``embed(embed_params, numeric, categorical) -> h``.
      encode: ``encode(shared_params, h, *, train, key) -> z`` (a pytree).
      decode: ``decode(head_params, z, h, *, train, key) -> outputs (B, T_out)``.
      last_shared: ``last_shared(shared_params) -> mask`` of booleans marking the
        last shared layer (the one producing ``z``), used by GradNorm; ``None``
        when the model does not name it.
      num_tasks: T, the number of training losses (what a balancer weighs).
      name: registry name or import path.
      gates: optional ``gates(params, numeric, categorical) -> (T, B, E)`` gate
        probabilities for inspection (mixture-of-experts models).
      losses: optional ``losses(outputs, labels) -> (T,)`` mean training losses
        over the batch; ``None``: one task per label column, sigmoid
        cross-entropy on logits for binary tasks and squared error for
        regression (:func:`default_task_losses`).
      loss_names: names of the T losses (logged with their weights); ``None``:
        the data's task names.
      eval_view: optional ``eval_view(outputs, labels) -> EvalView`` on host
        numpy arrays; ``None``: each label column scored on every row.
      module: the Flax module the functions were built from (for inspection).
    """

    init: Callable[[jax.Array], PyTree]
    embed: Callable[..., jax.Array]
    encode: Callable[..., PyTree]
    decode: Callable[..., jax.Array]
    last_shared: Callable[[PyTree], PyTree] | None
    num_tasks: int
    name: str
    gates: Callable[..., jax.Array] | None = None
    losses: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    loss_names: tuple[str, ...] | None = None
    eval_view: Callable[[np.ndarray, np.ndarray], EvalView] | None = None
    module: Any = None

    def apply(self, params, numeric, categorical, *, train: bool = False, key=None) -> jax.Array:
        """The full forward pass: ``(B, T_out)`` logits / predictions."""
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        h = self.embed(params["embed"], numeric, categorical)
        z = self.encode(params["shared"], h, train=train, key=k1)
        return self.decode(params["heads"], z, h, train=train, key=k2)

    def task_losses(self, outputs: jax.Array, labels: jax.Array, kinds: Sequence[str]) -> jax.Array:
        """The ``(T,)`` training losses of a batch: the model's own, or the default per label column."""
        if self.losses is not None:
            return self.losses(outputs, labels)
        return default_task_losses(outputs, labels, kinds)

    def evaluation(self, outputs: np.ndarray, labels: np.ndarray, names: Sequence[str],
                   kinds: Sequence[str]) -> EvalView:
        """What to score: the model's own evaluation heads, or each label column on every row."""
        if self.eval_view is not None:
            return self.eval_view(outputs, labels)
        return EvalView(tuple(names), tuple(kinds), labels, outputs)


def default_task_losses(outputs: jax.Array, labels: jax.Array, kinds: Sequence[str]) -> jax.Array:
    """Mean loss of each task over the batch: ``(T,)``.

    Binary tasks: sigmoid cross-entropy on logits; regression tasks: squared error.
    """
    binary = jnp.asarray([k == "binary" for k in kinds])
    bce = optax.sigmoid_binary_cross_entropy(outputs, labels)
    mse = jnp.square(outputs - labels)
    return jnp.mean(jnp.where(binary[None, :], bce, mse), axis=0)


def path_mask(tree: PyTree, prefixes: Sequence[str]) -> PyTree:
    """Booleans marking the leaves of ``tree`` whose ``/``-joined key path
    starts with one of ``prefixes`` (e.g. ``"experts/last"``)."""
    prefixes = tuple(p.strip("/") for p in prefixes)

    def mark(path, _):
        name = "/".join(_key_name(k) for k in path)
        return any(name == p or name.startswith(p + "/") for p in prefixes)

    return jax.tree_util.tree_map_with_path(mark, tree)


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def count_params(params: PyTree) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
