"""Multi-task models as pure functions over parameter pytrees.

    model = mtl.models.get("mmoe", num_tasks=2, num_numeric=100)
    params = model.init(jax.random.key(0))
    logits = model.apply(params, numeric, categorical)       # (B, T)

``REGISTRY`` maps a name to its constructor; every constructor takes the data
shape (``num_tasks``, ``num_numeric``, ``vocab_sizes``) plus keyword sizes.
"""

from __future__ import annotations

from typing import Callable

from mtl.models.base import Model, count_params
from mtl.models.moe import mmoe, omoe
from mtl.models.ple import cgc, ple
from mtl.models.shared_bottom import shared_bottom
from mtl.models.single_task import single_task

REGISTRY: dict[str, Callable[..., Model]] = {
    "single_task": single_task,
    "shared_bottom": shared_bottom,
    "omoe": omoe,
    "mmoe": mmoe,
    "cgc": cgc,
    "ple": ple,
}


def get(name: str, **kwargs) -> Model:
    """Builds model ``name``; unknown names list the choices."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}") from e


__all__ = ["Model", "REGISTRY", "count_params", "get"]
