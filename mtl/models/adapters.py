"""Flax modules -> the library's :class:`~mtl.models.base.Model` value.

The protocol a module follows to plug into the train step (ours do; a user's
model does the same):

* three named sub-modules ``embed``, ``shared``, ``heads``: they fix the
  parameter tree's top-level keys (a part without parameters may be absent);
* ``features(numeric, categorical) -> h``: the input layer (part ``embed``);
* ``encode(h, train) -> z``: the shared network (part ``shared``); ``z`` may be
  any pytree;
* ``decode(z, h, train) -> outputs (B, T)``: the task-specific layers (part ``heads``);
* optional: ``last_shared_layers() -> tuple of paths`` inside ``shared`` (e.g.
  ``("experts/last",)``) naming the layer that produces ``z`` (GradNorm needs it);
  ``gate_probs(numeric, categorical)`` for inspection; ``task_losses(outputs,
  labels) -> (T,)``, ``loss_names()`` and ``eval_view(outputs, labels)`` for
  models with their own losses and evaluation heads (ESMM, AITM).

``train`` is passed positionally. Dropout draws from the ``"dropout"`` RNG
stream (linen) or from ``rngs`` passed to ``encode``/``decode`` (NNX:
``encode(h, train, rngs=...)``). Only parameters are state: modules with other
mutable collections (batch statistics) are refused.

:func:`from_linen` and :func:`from_nnx` check the protocol when called, before
any data is read, and say what is missing.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtl.models.base import PARTS, Model, path_mask

REQUIRED_METHODS = ("features", "encode", "decode")
PROTOCOL = ("three sub-modules named embed, shared and heads; methods features(numeric, categorical) -> h, "
            "encode(h, train) -> z and decode(z, h, train) -> outputs (B, T)")


class ModelProtocolError(ValueError):
    """A module does not follow the model protocol (see :mod:`mtl.models.adapters`)."""


def _check_methods(obj, what: str) -> None:
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(obj, m, None))]
    if missing:
        raise ModelProtocolError(f"{what} lacks method(s) {', '.join(missing)}; a model needs {PROTOCOL}")


def _check_parts(params: dict, what: str) -> dict:
    extra = sorted(set(params) - set(PARTS))
    if extra:
        raise ModelProtocolError(
            f"{what} has parameters outside the parts embed/shared/heads: {extra}; put every parameter under "
            f"one of the sub-modules embed, shared, heads ({PROTOCOL})")
    if not any(jax.tree_util.tree_leaves(params.get(p, {})) for p in PARTS):
        raise ModelProtocolError(f"{what} has no parameters")
    return {p: params.get(p, {}) for p in PARTS}


def _dummy_inputs(num_numeric: int, num_categorical: int):
    # numpy, not jnp: a model may be built while a jit trace is active, and its cached init must not keep tracers
    return np.zeros((2, num_numeric), np.float32), np.zeros((2, num_categorical), np.int32)


def _optional(obj, name: str) -> Callable | None:
    fn = getattr(obj, name, None)
    return fn if callable(fn) else None


def _last_shared_fn(obj) -> Callable | None:
    layers = _optional(obj, "last_shared_layers")
    if layers is None:
        return None
    prefixes = tuple(layers())

    def last_shared(shared):
        mask = path_mask(shared, prefixes)
        if not any(jax.tree_util.tree_leaves(mask)):
            raise ModelProtocolError(f"last_shared_layers() = {prefixes} matches no parameter under 'shared'")
        return mask

    return last_shared


def _model_extras(obj) -> dict:
    """The optional protocol methods that do not touch parameters."""
    out = {"last_shared": _last_shared_fn(obj), "losses": _optional(obj, "task_losses"),
           "eval_view": _optional(obj, "eval_view")}
    names = _optional(obj, "loss_names")
    out["loss_names"] = tuple(names()) if names is not None else None
    return out


def from_linen(module, *, num_numeric: int, num_categorical: int, name: str | None = None) -> Model:
    """Wraps a linen module following the protocol as a :class:`Model`.

    Args:
      module: an unbound ``flax.linen.Module``.
      num_numeric, num_categorical: input widths (to trace ``init``).
      name: the model's name in summaries (default: the class name).
    """
    from flax import linen as nn

    what = f"linen module {type(module).__name__}"
    if not isinstance(module, nn.Module):
        raise ModelProtocolError(f"{type(module).__name__} is not a flax.linen.Module")
    _check_methods(module, what)
    num, cat = _dummy_inputs(num_numeric, num_categorical)
    init = _linen_init(module, num_numeric, num_categorical)
    shapes = jax.eval_shape(init, jax.random.key(0))  # checks the protocol now, before any data is read
    out_shape = jax.eval_shape(lambda p: module.apply({"params": p}, num, cat, method=_forward), shapes)
    if len(out_shape.shape) != 2:
        raise ModelProtocolError(f"{what}: decode must return (batch, tasks) outputs, got shape {out_shape.shape}")

    def rngs(key):
        return None if key is None else {"dropout": key}

    def embed(params, numeric, categorical):
        return module.apply({"params": {"embed": params}}, numeric, categorical,
                            method=lambda m, n, c: m.features(n, c))

    def encode(params, h, *, train=False, key=None):
        return module.apply({"params": {"shared": params}}, h, bool(train and key is not None),
                            method=lambda m, h_, t: m.encode(h_, t), rngs=rngs(key))

    def decode(params, z, h, *, train=False, key=None):
        return module.apply({"params": {"heads": params}}, z, h, bool(train and key is not None),
                            method=lambda m, z_, h_, t: m.decode(z_, h_, t), rngs=rngs(key))

    gates = None
    if _optional(module, "gate_probs") is not None:
        def gates(params, numeric, categorical):
            return module.apply({"params": params}, numeric, categorical, method=lambda m, n, c: m.gate_probs(n, c))

    extras = _model_extras(module)
    num_tasks = len(extras["loss_names"]) if extras["loss_names"] else out_shape.shape[1]
    return Model(init=init, embed=embed, encode=encode, decode=decode, num_tasks=int(num_tasks),
                 name=name or type(module).__name__, gates=gates, module=module, **extras)



def _forward(m, numeric, categorical):
    h = m.features(numeric, categorical)
    return m.decode(m.encode(h, False), h, False)


@functools.lru_cache(maxsize=64)
def _linen_init(module, num_numeric: int, num_categorical: int) -> Callable:
    """One jitted ``init(key)`` per (module, input widths): equal modules share it and
    its compiled program (eager initialisers would compile one small program per shape)."""
    what = f"linen module {type(module).__name__}"
    num, cat = _dummy_inputs(num_numeric, num_categorical)

    def init(key):
        variables = module.init({"params": key}, num, cat, method=_forward)
        other = sorted(set(variables) - {"params"})
        if other:
            raise ModelProtocolError(f"{what} has mutable collections {other}; only parameters are supported")
        return _check_parts(dict(variables.get("params", {})), what)

    return jax.jit(init)


def from_nnx(make: Callable[[Any], Any], *, num_numeric: int, num_categorical: int, name: str | None = None) -> Model:
    """Wraps an NNX module following the protocol as a :class:`Model`.

    Args:
      make: ``make(rngs) -> module``: builds the module with its parameters drawn
        from ``rngs`` (an ``nnx.Rngs``); ``init(key)`` calls it with
        ``nnx.Rngs(key)``. The module is split once (``nnx.split``) and merged
        inside the pure functions (``nnx.merge``), so the train step runs plain
        ``jax.jit`` over the parameter pytree.
      num_numeric, num_categorical: input widths (for the protocol check).
      name: the model's name in summaries (default: the class name).

    ``encode``/``decode`` receive ``rngs=nnx.Rngs(dropout=key)`` in training
    (``None`` otherwise) as a keyword; use it for ``nnx.Dropout``.
    """
    from flax import nnx

    abstract = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    what = f"NNX module {type(abstract).__name__}"
    if not isinstance(abstract, nnx.Module):
        raise ModelProtocolError(f"{type(abstract).__name__} is not a flax.nnx.Module")
    _check_methods(abstract, what)
    graphdef, abstract_params, rest = nnx.split(abstract, nnx.Param, ...)
    non_rng = [p for p, v in nnx.to_flat_state(rest) if not isinstance(v, nnx.RngState)]
    if non_rng:
        raise ModelProtocolError(f"{what} has non-parameter state {['/'.join(map(str, p)) for p in non_rng[:5]]}; "
                                 "only parameters are supported (no batch statistics)")
    _check_parts(_to_plain(abstract_params.to_pure_dict()), what)

    def init(key):
        _, params, _ = nnx.split(make(nnx.Rngs(key)), nnx.Param, ...)
        return {p: v for p, v in _to_plain(params.to_pure_dict()).items()} | \
            {p: {} for p in PARTS if p not in params}

    shapes = jax.eval_shape(init, jax.random.key(0))
    init = jax.jit(init)

    def merged(part: str, values):
        full = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # unused parts: XLA drops them
        full[part] = values
        state = nnx.State(_from_plain(abstract_params.to_pure_dict(), full))
        return nnx.merge(graphdef, state, rest)

    def rngs(key):
        return None if key is None else nnx.Rngs(dropout=key)

    def embed(params, numeric, categorical):
        return merged("embed", params).features(numeric, categorical)

    def encode(params, h, *, train=False, key=None):
        return merged("shared", params).encode(h, bool(train and key is not None), rngs=rngs(key))

    def decode(params, z, h, *, train=False, key=None):
        return merged("heads", params).decode(z, h, bool(train and key is not None), rngs=rngs(key))

    num, cat = _dummy_inputs(num_numeric, num_categorical)
    probe = Model(init, embed, encode, decode, None, 0, "")
    out_shape = jax.eval_shape(lambda p: probe.apply(p, num, cat), shapes)
    if len(out_shape.shape) != 2:
        raise ModelProtocolError(f"{what}: decode must return (batch, tasks) outputs, got shape {out_shape.shape}")
    extras = _model_extras(abstract)
    num_tasks = len(extras["loss_names"]) if extras["loss_names"] else out_shape.shape[1]
    return Model(init=init, embed=embed, encode=encode, decode=decode, num_tasks=int(num_tasks),
                 name=name or type(abstract).__name__, module=abstract, **extras)


def _to_plain(tree):
    """NNX pure dicts (integer keys for lists) -> nested dicts with string keys."""
    if isinstance(tree, dict) or hasattr(tree, "items"):
        return {str(k): _to_plain(v) for k, v in tree.items()}
    return tree


def _from_plain(template, plain):
    """Inverse of :func:`_to_plain`: the template's keys (ints stay ints), the plain tree's values."""
    if isinstance(template, dict) or hasattr(template, "items"):
        return {k: _from_plain(v, plain[str(k)]) for k, v in template.items()}
    return plain


# ---------------------------------------------------------------------------
# Models named by import path: "package.module:ClassName"
# ---------------------------------------------------------------------------

#: Facts of the data a model constructor may take (passed when it has a field / parameter of that name).
DATA_FACTS = ("num_tasks", "num_numeric", "vocab_sizes", "task_names")


def import_model_class(path: str):
    """The class named by ``"package.module:ClassName"``; a clear error when it is not there."""
    if ":" not in path:
        raise ModelProtocolError(f"model import path {path!r} must look like 'package.module:ClassName'")
    module_name, _, attr = path.partition(":")
    try:
        mod = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelProtocolError(f"cannot import module {module_name!r} of model {path!r}: {e}") from None
    try:
        cls = getattr(mod, attr)
    except AttributeError:
        raise ModelProtocolError(f"module {module_name!r} has no {attr!r} (model {path!r})") from None
    return cls


def constructor_parameters(cls) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a model class's constructor (dataclass fields for linen)."""
    from flax import nnx

    nnx_class = isinstance(cls, type) and issubclass(cls, nnx.Module)
    params = inspect.signature(cls.__init__ if nnx_class else cls).parameters
    skip = {"parent", "name", "rngs", "self"}
    return {k: p for k, p in params.items() if k not in skip and p.kind in
            (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def model_from_class(cls, *, path: str, facts: dict, hparams: dict) -> Model:
    """Builds a linen or NNX model class with the data facts it takes and ``hparams``."""
    from flax import linen as nn
    from flax import nnx

    accepted = constructor_parameters(cls)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ModelProtocolError(f"model {path!r} takes no hyperparameter(s) {unknown}; it takes: "
                                 f"{', '.join(sorted(set(accepted) - set(DATA_FACTS))) or 'none'}")
    kwargs = {k: v for k, v in facts.items() if k in accepted} | dict(hparams)
    dims = {"num_numeric": facts["num_numeric"], "num_categorical": len(facts.get("vocab_sizes", ()))}
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        return from_linen(cls(**kwargs), name=path, **dims)
    if isinstance(cls, type) and issubclass(cls, nnx.Module):
        return from_nnx(lambda rngs: cls(**kwargs, rngs=rngs), name=path, **dims)
    raise ModelProtocolError(f"{path!r} is not a flax.linen.Module or flax.nnx.Module subclass")


def linen_fields(cls) -> dict[str, Any]:
    """Hyperparameters of a linen model class with their defaults (dataclass fields)."""
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.name not in ("parent", "name") and f.default is not dataclasses.MISSING}
