"""What the conversion-funnel models (ESMM, AITM) share: finding the click and
conversion label columns, and probabilities of products in log space."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

CLICK_NAMES = ("click", "ctr", "is_click")
CONVERSION_NAMES = ("conversion", "purchase", "cvr", "buy", "is_purchase")
CTCVR_NAMES = ("ctcvr",)


def funnel_columns(task_names: Sequence[str], model: str) -> tuple[int, int, bool]:
    """``(click column, conversion column, conversion_is_ctcvr)`` of the data's labels.

    The conversion column may be the conversion label (``conversion``/``purchase``)
    or ESMM's CTCVR label (``ctcvr`` = click AND conversion); both give the same
    CTCVR label ``click * conversion``.
    """
    names = [n.lower() for n in task_names]
    click = next((i for i, n in enumerate(names) if n in CLICK_NAMES), None)
    conv = next((i for i, n in enumerate(names) if n in CONVERSION_NAMES), None)
    is_ctcvr = False
    if conv is None:
        conv = next((i for i, n in enumerate(names) if n in CTCVR_NAMES), None)
        is_ctcvr = conv is not None
    if click is None or conv is None:
        raise ValueError(
            f"{model} needs a click task and a conversion (or ctcvr) task; the data's tasks are {list(task_names)} "
            "(e.g. --config.data.tasks=click,conversion)")
    return click, conv, is_ctcvr


def log_sigmoid_product(logits: jax.Array) -> jax.Array:
    """``log prod_i sigmoid(logits[..., i])`` (stable)."""
    return jnp.sum(jax.nn.log_sigmoid(logits), axis=-1)


def log1mexp(log_p: jax.Array) -> jax.Array:
    """``log(1 - exp(log_p))`` for ``log_p <= 0``; ``p`` is capped at ``1 - 1e-7``
    so that the loss of a negative label stays finite."""
    return jnp.log(-jnp.expm1(jnp.minimum(log_p, -1e-7)))


def bce_from_log_prob(log_p: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of a probability given as ``log p``."""
    return -jnp.mean(labels * log_p + (1.0 - labels) * log1mexp(log_p))


def logit_of_product_np(logits: np.ndarray) -> np.ndarray:
    """The logit of ``prod_i sigmoid(logits[:, i])`` in float64 (host side, for AUC and log loss)."""
    x = np.asarray(logits, np.float64)
    log_p = np.sum(-np.logaddexp(0.0, -x), axis=-1)
    return log_p - np.log(-np.expm1(np.minimum(log_p, -1e-300)))
