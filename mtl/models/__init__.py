"""Multi-task models: Flax modules behind a functional boundary.

    model = mtl.models.get("mmoe", num_tasks=2, num_numeric=100)
    params = model.init(jax.random.key(0))
    logits = model.apply(params, numeric, categorical)       # (B, T)

``REGISTRY`` maps a name to a Flax linen module class (:class:`MMoE`,
:class:`PLE`, ...); ``get`` builds it with the data's shape (``num_tasks``,
``num_numeric``, ``vocab_sizes``, ``task_names``: each passed when the class
takes it) and keyword sizes, and wraps it with :func:`from_linen`. A name of the
form ``"package.module:ClassName"`` imports a user's linen or NNX module
instead (see :mod:`mtl.models.adapters` for the protocol).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from mtl.models.adapters import (
    DATA_FACTS,
    ModelProtocolError,
    constructor_parameters,
    from_linen,
    from_nnx,
    import_model_class,
    model_from_class,
)
from mtl.models.aitm import AITM
from mtl.models.base import PARTS, EvalView, Model, count_params, default_task_losses
from mtl.models.esmm import ESMM
from mtl.models.module import MultiTaskModule
from mtl.models.moe import MMoE, OMoE
from mtl.models.ple import CGC, PLE
from mtl.models.shared_bottom import SharedBottom
from mtl.models.single_task import SingleTask

REGISTRY: dict[str, type] = {
    "single_task": SingleTask,
    "shared_bottom": SharedBottom,
    "omoe": OMoE,
    "mmoe": MMoE,
    "cgc": CGC,
    "ple": PLE,
    "esmm": ESMM,
    "aitm": AITM,
}


def model_class(name: str):
    """The module class of a registry name or an import path ``package.module:ClassName``."""
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" in name:
        return import_model_class(name)
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))} "
                     "(or an import path package.module:ClassName)")


def hyperparameters(name: str) -> dict[str, inspect.Parameter]:
    """A model's constructor keywords other than the data facts, with their defaults and annotations."""
    return {k: p for k, p in constructor_parameters(model_class(name)).items() if k not in DATA_FACTS}


def check(name: str, hparams: dict | None = None) -> None:
    """Fails fast, before any data is read: an unknown name or import path, a class
    that is not a Flax module with the protocol's methods, unknown hyperparameters."""
    from flax import linen as nn
    from flax import nnx

    cls = model_class(name)
    if not (isinstance(cls, type) and issubclass(cls, (nn.Module, nnx.Module))):
        raise ModelProtocolError(f"model {name!r} is not a flax.linen.Module or flax.nnx.Module subclass")
    missing = [m for m in ("features", "encode", "decode") if not callable(getattr(cls, m, None))]
    if missing:
        raise ModelProtocolError(f"model {name!r} lacks method(s) {', '.join(missing)}; a model needs three "
                                 "sub-modules named embed, shared and heads and methods features(numeric, "
                                 "categorical), encode(h, train), decode(z, h, train)")
    unknown = sorted(set(hparams or {}) - set(hyperparameters(name)))
    if unknown:
        raise ModelProtocolError(f"model {name!r} takes no hyperparameter(s) {unknown}; it takes: "
                                 f"{', '.join(sorted(hyperparameters(name))) or 'none'}")


def get(name: str, *, num_tasks: int, num_numeric: int, vocab_sizes: Sequence[int] = (),
        task_names: Sequence[str] | None = None, **hparams: Any) -> Model:
    """Builds model ``name`` (registry name or import path) for data of this shape."""
    check(name, hparams)
    facts = {"num_tasks": int(num_tasks), "num_numeric": int(num_numeric),
             "vocab_sizes": tuple(int(v) for v in vocab_sizes)}
    if task_names is not None:
        facts["task_names"] = tuple(task_names)
    try:
        return model_from_class(model_class(name), path=name, facts=facts, hparams=hparams)
    except ModelProtocolError:
        raise
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}") from e


__all__ = ["AITM", "CGC", "ESMM", "EvalView", "MMoE", "Model", "ModelProtocolError", "MultiTaskModule", "OMoE",
           "PARTS", "PLE", "REGISTRY", "SharedBottom", "SingleTask", "check", "count_params", "default_task_losses",
           "from_linen", "from_nnx", "get", "hyperparameters", "model_class"]
