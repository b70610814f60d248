"""ESMM: the Entire Space Multi-task Model (Ma et al., SIGIR 2018).

Two towers over shared embeddings predict the click-through rate and the
post-click conversion rate; their product is the click-and-convert rate over
all impressions:

    pCTR = sigmoid(tower_ctr(h)),   pCVR = sigmoid(tower_cvr(h)),   pCTCVR = pCTR * pCVR.

Training uses two losses over *all* impressions (the entire space), which is
what ESMM is about: the CVR tower never sees a loss restricted to clicked
impressions (the sample-selection bias of plain CVR models):

    L_ctr   = BCE(pCTR, click),      L_ctcvr = BCE(pCTCVR, click * conversion).

These two losses are the tasks a balancer weighs. The CTR tower feeds both, so
both towers are the *shared* part here (``shared/towers/...``; the embeddings
are ``embed``; there are no task-specific ``heads``) and the representation
``z`` is the pair of tower logits. ``pCTCVR``'s log is
``log_sigmoid(a) + log_sigmoid(b)``; ``1 - pCTCVR`` is computed as
``-expm1(log pCTCVR)`` with ``pCTCVR <= 1 - 1e-7``.

Evaluation as the paper reports it: CTR AUC on all impressions, CVR AUC on
clicked impressions only, CTCVR AUC on all impressions (heads ``click``,
``conversion``, ``ctcvr``).

Defaults: towers of 200 and 80 units (the paper's 360-200-80-2 MLP after its
embeddings), 16-dimensional embeddings. The data needs a click label and a
conversion label (``conversion``/``purchase``) or ESMM's ``ctcvr`` label, e.g.
``--config.data.tasks=click,conversion``.

Reference: X. Ma, L. Zhao, G. Huang, Z. Wang, Z. Hu, X. Zhu, K. Gai. "Entire
Space Multi-Task Model: An Effective Approach for Estimating Post-Click
Conversion Rate." SIGIR 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

from mtl.models.base import EvalView
from mtl.models.funnel import bce_from_log_prob, funnel_columns, log_sigmoid_product, logit_of_product_np
from mtl.models.layers import MLP, Embed
from mtl.models.module import MultiTaskModule


class FunnelTowers(nn.Module):
    """``T`` towers on the shared input, stacked: returns their logits ``(B, T)``."""

    num_towers: int
    hidden: Sequence[int]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, train: bool = False):
        y = MLP((*self.hidden, 1), final_activation=False, dropout=self.dropout, copies=self.num_towers,
                name="towers")(h, train, True)
        return y[..., 0].T


class NoHeads(nn.Module):
    """An empty ``heads`` part: the outputs are the representation."""

    @nn.compact
    def __call__(self, z, h, train: bool = False):
        return z


class ESMM(MultiTaskModule):
    """ESMM over the data's click and conversion labels (see the module docstring)."""

    num_tasks: int = 2
    num_numeric: int = 0
    vocab_sizes: Sequence[int] = ()
    task_names: Sequence[str] = ("click", "conversion")
    embed_dim: int = 16
    tower_hidden: Sequence[int] = (200, 80)
    dropout: float = 0.0

    def __post_init__(self):
        funnel_columns(self.task_names, "ESMM")  # fails at construction, naming the tasks it needs
        super().__post_init__()

    def setup(self):
        self.embed = Embed(tuple(self.vocab_sizes), self.embed_dim)
        self.shared = FunnelTowers(2, tuple(self.tower_hidden), self.dropout)
        self.heads = NoHeads()

    def last_shared_layers(self):
        return ("towers/last",)

    def loss_names(self):
        return ("click", "ctcvr")

    def _labels(self, labels):
        click, conv, _ = funnel_columns(self.task_names, "ESMM")
        return labels[:, click], labels[:, click] * labels[:, conv]

    def task_losses(self, outputs, labels):
        click, ctcvr = self._labels(labels)
        l_ctr = jnp.mean(optax.sigmoid_binary_cross_entropy(outputs[:, 0], click))
        l_ctcvr = bce_from_log_prob(log_sigmoid_product(outputs), ctcvr)
        return jnp.stack([l_ctr, l_ctcvr])

    def eval_view(self, outputs, labels):
        outputs = np.asarray(outputs, np.float64)
        click, conv, is_ctcvr = funnel_columns(self.task_names, "ESMM")
        y_click = labels[:, click]
        y_ctcvr = y_click * labels[:, conv]
        return EvalView(
            names=("click", "conversion", "ctcvr"),
            kinds=("binary",) * 3,
            labels=np.stack([y_click, y_ctcvr, y_ctcvr], 1),  # on clicked rows, conversion == ctcvr
            outputs=np.stack([outputs[:, 0], outputs[:, 1], logit_of_product_np(outputs)], 1),
            masks={"conversion": y_click > 0.5},
        )
