"""The config schema shared by every experiment config.

Every config file defines ``get_config(arg)`` returning a ConfigDict built on
``base_config()``. The command line (``mtl-train`` / ``python -m mtl.train``)
converts it to typed arguments for the library; ``mtl/`` never reads a config.

Keys:
  seed, epochs, batch_size, eval_batch_size, learning_rate, weight_decay,
  patience (early-stopping epochs without validation improvement; 0 = off),
  steps_per_call (train steps fused into one compiled call, between progress updates),
  select_by ('auto', 'auc' or 'loss': how the best validation epoch is chosen),
  model.name (see mtl.models.REGISTRY), model.hparams (constructor keywords),
  balancer.name (see mtl.balancers.REGISTRY), balancer.hparams (factory keywords),
  balancer.rep_grad (per-task gradients at the shared representation),
  balancer.balance_embeddings (include embedding tables in the balanced set),
  balancer.weight_heads (scale task-specific gradients by the balancer's weights),
  diagnostics ('' off; 'epoch': per-epoch averages of per-task gradient norms and
    pairwise cosines in metrics.jsonl; 'step': also every step in steps.jsonl),
  data.name (see mtl.data.LOADERS) and the loader's keyword arguments.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.epochs = 10
    c.batch_size = 1024
    c.eval_batch_size = 8192
    c.learning_rate = 1e-3
    c.weight_decay = 0.0
    c.patience = 0
    c.steps_per_call = 100
    c.diagnostics = ""
    c.select_by = "auto"
    c.model = ml_collections.ConfigDict({"name": "mmoe", "hparams": ml_collections.ConfigDict()})
    c.balancer = ml_collections.ConfigDict(
        {"name": "ew", "hparams": ml_collections.ConfigDict(), "rep_grad": False, "balance_embeddings": False,
         "weight_heads": False}
    )
    c.data = ml_collections.ConfigDict({"name": "synthetic"})
    return c
