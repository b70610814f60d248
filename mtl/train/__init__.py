"""Training: the jit-compiled multi-task step and the engine around it.

``mtl-train --config=experiments/configs/synthetic.py --workdir=DIR`` runs one
experiment (:func:`mtl.train.run.train_and_evaluate`); :func:`fit` is the training loop.
"""

from mtl.train.loop import NonFiniteLossError, RunState, TrainingInterrupted, fit, make_predict
from mtl.train.step import (
                            TrainState,
                            combine,
                            default_shared_mask,
                            init_train_state,
                            make_train_step,
                            partition,
                            task_losses,
)

__all__ = ["NonFiniteLossError", "RunState", "TrainState", "TrainingInterrupted", "combine", "default_shared_mask",
           "fit", "init_train_state", "make_predict", "make_train_step", "partition", "task_losses"]
