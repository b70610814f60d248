"""Gradient-balancing methods, one file each, built by name.

    b = mtl.balancers.get("pcgrad")           # or REGISTRY["pcgrad"]()
    state = b.init(num_tasks)
    combined, weights, state = b.update(losses, task_grads, state, key=key)

See :mod:`mtl.balancers.base` for the interface. To add a method: write one
file with a factory returning a :class:`Balancer` (keyword-only parameters,
each with a default and a ``bool``/``int``/``float``/``str``/``tuple`` type,
possibly ``Optional``: the command line exposes them), and add one line to
``REGISTRY`` below; ``tests/test_balancer_contract.py`` runs every registered
method through the contract. Facts of the training run that a factory takes
as keywords (``steps_per_epoch``, ``rep_grad``) default to ``None`` and are
declared with :func:`mtl.balancers.base.declare_run_facts`; the training loop
fills them in with :func:`with_run_facts`.
"""

from __future__ import annotations

from collections.abc import Callable

from mtl.balancers.aligned_mtl import aligned_mtl
from mtl.balancers.base import Balancer, EmptyState, gramian, gramian_balancer, weighted_sum, with_run_facts
from mtl.balancers.cagrad import cagrad
from mtl.balancers.db_mtl import db_mtl
from mtl.balancers.dwa import dwa
from mtl.balancers.ew import ew
from mtl.balancers.excess_mtl import excess_mtl
from mtl.balancers.fairgrad import fairgrad
from mtl.balancers.famo import famo
from mtl.balancers.fixed import fixed
from mtl.balancers.gls import gls
from mtl.balancers.graddrop import graddrop
from mtl.balancers.gradnorm import gradnorm
from mtl.balancers.gradvac import gradvac
from mtl.balancers.imtl import imtl
from mtl.balancers.metabalance import metabalance
from mtl.balancers.mgda import mgda
from mtl.balancers.moco import moco
from mtl.balancers.modo import modo
from mtl.balancers.nash_mtl import nash_mtl
from mtl.balancers.pcgrad import pcgrad
from mtl.balancers.rlw import rlw
from mtl.balancers.sdmgrad import sdmgrad
from mtl.balancers.stch import stch
from mtl.balancers.upgrad import upgrad
from mtl.balancers.uw import uw

REGISTRY: dict[str, Callable[..., Balancer]] = {
    "ew": ew,
    "fixed": fixed,
    "uw": uw,
    "gradnorm": gradnorm,
    "pcgrad": pcgrad,
    "dwa": dwa,
    "rlw": rlw,
    "gls": gls,
    "famo": famo,
    "stch": stch,
    "graddrop": graddrop,
    "gradvac": gradvac,
    "imtl": imtl,
    "cagrad": cagrad,
    "metabalance": metabalance,
    "mgda": mgda,
    "nash_mtl": nash_mtl,
    "aligned_mtl": aligned_mtl,
    "db_mtl": db_mtl,
    "moco": moco,
    "fairgrad": fairgrad,
    "upgrad": upgrad,
    "sdmgrad": sdmgrad,
    "modo": modo,
    "excess_mtl": excess_mtl,
}


def get(name: str, **hparams) -> Balancer:
    """Builds the balancer registered as ``name`` with keyword hyperparameters."""
    if name not in REGISTRY:
        raise ValueError(
            f"unknown balancer {name!r}; choose one of: {', '.join(sorted(REGISTRY))}"
        )
    try:
        return REGISTRY[name](**hparams)
    except TypeError as e:
        raise ValueError(f"bad hyperparameters for balancer {name!r}: {e}") from e


__all__ = ["Balancer", "EmptyState", "REGISTRY", "get", "gramian", "gramian_balancer", "weighted_sum",
           "with_run_facts"]
