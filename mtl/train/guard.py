"""Checkpoints and signals: a run that can stop at any time and resume bit for bit.

:class:`RunGuard` saves the run state and the host's meta with orbax
(:mod:`mtl.train.checkpoint`) at the end of every ``checkpoint_every`` epochs
and of the last epoch, and restores the latest checkpoint when there is one
(the data order of an epoch and the keys of each call are derived from the
state, so the resumed run computes what the uninterrupted one would). With
``handle_signals``, SIGINT/SIGTERM only mark the run as interrupted: the
current compiled call finishes, a checkpoint is written and
:class:`TrainingInterrupted` is raised; a second signal stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from jax.sharding import Mesh

from mtl.train import devices as dev
from mtl.train import distributed
from mtl.train.checkpoint import Checkpointer
from mtl.train.state import FORMAT_VERSION, RunState


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; the current compiled call finished and a checkpoint was written."""

    def __init__(self, signum: int, epoch: int, global_step: int, checkpoint: str | None):
        self.signum, self.epoch, self.global_step, self.checkpoint = signum, epoch, global_step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint written to {checkpoint}; run the same command to resume" if checkpoint else \
            "no checkpoint directory: progress is lost"
        super().__init__(f"interrupted by {name} at epoch {epoch} (global step {global_step}); {where}")


class RunGuard:
    """Checkpoints in ``checkpoint_dir`` (``None``: none) and, with ``handle_signals``
    (honoured in the main thread only), SIGINT/SIGTERM handling until :meth:`close`."""

    def __init__(self, checkpoint_dir: str | None, *, every: int = 1, max_checkpoints: int = 2,
                 handle_signals: bool = False):
        self.every = max(1, every)
        self.ckpt = Checkpointer(checkpoint_dir, max_to_keep=max_checkpoints) if checkpoint_dir else None
        self.signals: list[int] = []
        self._old_handlers = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        if self.signals:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signals.append(signum)

    def restore(self, state: RunState, meta: dict, mesh: Mesh,
                on_resume: Callable[[dict], None] | None = None) -> tuple[RunState, dict]:
        """The latest checkpoint's state (device arrays replicated over ``mesh``) and meta,
        or ``(state, meta)`` unchanged when there is none."""
        if self.ckpt is None or self.ckpt.latest_step() is None:
            return state, meta
        state, meta = self.ckpt.restore(self.ckpt.latest_step(), state)
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"checkpoint in {self.ckpt.directory} has format {meta.get('version')}, expected "
                             f"{FORMAT_VERSION}")
        state = state._replace(train=dev.put_replicated(state.train, mesh),
                               best_params=dev.put_replicated(state.best_params, mesh),
                               data_key=dev.put_replicated(state.data_key, mesh))
        if on_resume is not None:
            on_resume(meta)
        return state, meta

    def save(self, state: RunState, meta: dict) -> None:
        if self.ckpt is not None:
            self.ckpt.save(int(meta["global_step"]), state, meta)

    def after_call(self, state: RunState, meta: dict, epoch: int, more_calls: bool) -> None:
        """Mid-epoch: when a signal arrived (at any process), checkpoint and raise :class:`TrainingInterrupted`."""
        signum = distributed.agreed_signal(self.signals)  # a signal to one process stops them all
        if signum and more_calls:
            self.save(state, meta)
            self._interrupt(signum, epoch, meta)

    def after_epoch(self, state: RunState, meta: dict, epochs_done: int, last: bool) -> None:
        """Checkpoints every ``every`` epochs, after the ``last`` and on a signal (then raises)."""
        signum = distributed.agreed_signal(self.signals)
        if self.ckpt is not None and (last or epochs_done % self.every == 0 or signum):
            self.save(state, meta)
        if signum and not last:
            self._interrupt(signum, epochs_done, meta)

    def _interrupt(self, signum: int, epoch: int, meta: dict):
        raise TrainingInterrupted(signum, epoch, meta["global_step"],
                                  None if self.ckpt is None else str(self.ckpt.directory))

    def close(self) -> None:
        """Restores the previous signal handlers and closes the checkpoint manager."""
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        if self.ckpt is not None:
            self.ckpt.close()
