"""The config schema shared by every experiment config.

Every config file defines ``get_config(arg)`` returning a ConfigDict built on
``base_config()``. The command line (``mtl-train`` / ``python -m mtl.train``)
resolves it (:mod:`mtl.config`: every hyperparameter of the chosen model,
balancer and dataset loader is filled in with its default, then
``--config.KEY=VALUE`` overrides are applied, typed) and converts it to typed
arguments for the library; ``mtl/`` never reads a config.

Keys:
  label: a free-form name of the run (mtl-bench names model/balancer variants with it);
  seed: seeds initialisation, dropout, data order and balancer randomness.
  seeds: '' (one run with ``seed``), a count N (seeds seed..seed+N-1 trained side
    by side in one program, per-seed results in seed_<s>/), or a list '0,3,7'.
  data_per_seed: with several seeds, each seed trains on the dataset drawn with
    data.seed = its own seed (generated data such as the MMoE synthetic set).
  epochs: the epoch cap; batch_size: the global training batch (split over devices);
  eval_batch_size; learning_rate (Adam); weight_decay (AdamW when > 0);
  patience: early stopping after this many epochs without validation improvement
    (0 = off: train for ``epochs``);
  steps_per_call: train steps fused into one compiled call (between progress updates);
  select_by: 'auto', 'auc' or 'loss': how the best validation epoch is chosen;
  on_nonfinite: 'stop' (end the run naming epoch, step, task) or 'skip' (drop such steps, count them);
  num_devices: 0 = every local device, else that many (the batch is sharded over them);
  distributed: several processes train one run: each joins the group that JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID describe first (mtl/train/distributed.py);
  checkpoint_every: epochs between orbax checkpoints in WORKDIR/checkpoints (0 = none);
  max_checkpoints: how many to keep;
  device_memory_budget_mb: stream a larger training split from the host (0 = no limit);
  sweep: hyperparameter values trained side by side in one program, by config path:
    sweep.learning_rate=1e-4,3e-4 sweep.weight_decay=... sweep.balancer.hparams.c=0.2,0.4
    (float hyperparameters of the balancer); several keys form their Cartesian product,
    each point times each seed is one replica; each point's run directory is
    WORKDIR/<mtl.rundir.point_name(point)>/ (mtl/train/sweep.py); empty: no sweep;
  sweep_memory_mb: the memory a sweep's program may take; more replicas are split into
    several programs run one after another (0 = automatic: half the accelerator's
    memory, a quarter of host RAM on CPU);
  tensorboard: write TensorBoard event files beside metrics.jsonl;
  model.name: a name in mtl.models.REGISTRY or an import path 'package.module:ClassName';
  model.hparams: the model's constructor keywords (all of them, with defaults, after resolution);
  balancer.name: a name in mtl.balancers.REGISTRY; balancer.hparams: its factory keywords;
  balancer.rep_grad: per-task gradients at the shared representation;
  balancer.balance_embeddings: include embedding tables in the balanced set;
  balancer.weight_heads: scale task-specific gradients by the balancer's weights;
  diagnostics: '' off; 'epoch': per-epoch averages of per-task gradient norms and
    pairwise cosines in metrics.jsonl; 'step': also every step in steps.jsonl;
  data.name: a name in mtl.data.LOADERS, and the loader's keyword arguments.

The defaults train until the validation metric stops improving (patience 5,
at most 100 epochs, batch 256); the dataset configs set their own.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.label = ""
    c.seed = 0
    c.seeds = ""
    c.data_per_seed = False
    c.epochs = 100
    c.batch_size = 256
    c.eval_batch_size = 8192
    c.learning_rate = 1e-3
    c.weight_decay = 0.0
    c.patience = 5
    c.steps_per_call = 100
    c.diagnostics = ""
    c.select_by = "auto"
    c.on_nonfinite = "stop"
    c.num_devices = 0
    c.distributed = False
    c.checkpoint_every = 1
    c.max_checkpoints = 2
    c.device_memory_budget_mb = 0
    c.sweep = ml_collections.ConfigDict()
    c.sweep_memory_mb = 0.0
    c.tensorboard = True
    c.model = ml_collections.ConfigDict({"name": "mmoe", "hparams": ml_collections.ConfigDict()})
    c.balancer = ml_collections.ConfigDict(
        {"name": "ew", "hparams": ml_collections.ConfigDict(), "rep_grad": False, "balance_embeddings": False,
         "weight_heads": False}
    )
    c.data = ml_collections.ConfigDict({"name": "synthetic"})
    return c
