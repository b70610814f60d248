"""One epoch of training: compiled calls of scanned steps, and what the host keeps of them.

One compiled call (:func:`make_run_chunk`) runs the ``chunk`` steps of a call
inside a ``lax.scan`` over the rows of each step; padding steps and steps of a
stopped seed leave the state unchanged. Between calls the host only reads the
step outputs (:func:`train_epoch`): it checks them for non-finite values,
adds them to the running means of the epoch (:class:`~mtl.train.means.StepMeans`),
hands them to ``on_steps`` and keeps the wall time per step.

A non-finite loss, gradient or balancer output is detected inside the program
(:func:`mtl.train.step.make_train_step`): the step is not applied. With
``halt`` (``on_nonfinite="stop"``) the rest of the call is not applied either
and the host raises :class:`NonFiniteLossError` naming epoch, step, task and
method; otherwise such steps are dropped and counted (``skipped_steps``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from mtl.train import devices as dev
from mtl.train.guard import RunGuard
from mtl.train.means import StepMeans
from mtl.train.plan import EpochPlan, TrainFeed
from mtl.train.state import RunState, seed_index

PyTree = Any


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or balancer output."""

    def __init__(self, epoch: int, step: int, global_step: int, task: str, value: float, method: str = "",
                 seed: int | None = None, what: str = "loss"):
        self.epoch, self.step, self.global_step, self.task, self.value = epoch, step, global_step, task, value
        self.method, self.seed, self.what = method, seed, what
        where = f"{what} of task {task!r}" if what == "loss" else what
        who = f" (balancer {method!r}" + (f", seed {seed})" if seed is not None else ")") if method else ""
        super().__init__(
            f"non-finite {where} ({value}) at epoch {epoch}, step {step} of the epoch (global step {global_step})"
            f"{who}; the step was not applied and the run stopped; metrics and checkpoints of the epochs "
            "before are kept. --config.on_nonfinite=skip skips such steps instead")


def make_run_chunk(step_fn: Callable, out_shape: PyTree, k_batches: int, mesh: Mesh, halt: bool) -> Callable:
    """``run_chunk(train, block, positions, valid, stopped) -> (train, outputs)``: the steps
    of one call, step ``j`` on rows ``block[positions[j]]`` if ``valid[j]`` and not
    ``stopped``; ``outputs`` stacks each step's outputs (zeros when not run) and ``counted``."""
    spec = dev.batch_spec(mesh, 1 if k_batches > 1 else 0)

    def run_chunk(train, block, positions, valid, stopped):
        def body(carry, inp):
            s, halted = carry
            pos, v = inp
            batch = {k: jnp.take(x, pos if k_batches > 1 else pos[0], axis=0) for k, x in block.items()}
            if mesh.size > 1:
                batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, spec))
            zeros = jax.tree_util.tree_map(lambda sd: jnp.zeros(sd.shape, sd.dtype), out_shape)
            active = ~halted & ~stopped
            s_new, out = jax.lax.cond(v, lambda s_: step_fn(s_, batch, active), lambda s_: (s_, zeros), s)
            counted = v & active
            bad = counted & ~out["finite"]
            out = {**out, "counted": counted}
            return (s_new, halted | (bad & halt)), out

        (train, _), outs = jax.lax.scan(body, (train, jnp.array(False)), (positions, valid))
        return train, outs

    return run_chunk


def step_output_shape(step_fn: Callable, train: PyTree, batch_like: dict, k_batches: int,
                      seeds: Sequence[int] | None) -> PyTree:
    """Shapes of one step's outputs (one seed's), for the zeros of padding steps."""
    if seeds is not None:
        train = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), train)
    if k_batches > 1:
        batch_like = {k: jax.ShapeDtypeStruct((k_batches, *v.shape), v.dtype) for k, v in batch_like.items()}
    return jax.eval_shape(lambda s, b: step_fn(s, b)[1], train, batch_like)


class EpochContext(NamedTuple):
    """What :func:`train_epoch` needs beyond the state: the plan and feed, the compiled
    call, the seeds (``None``: one seed), the loss names, the balancer's name, ``halt``
    and the callbacks."""

    plan: EpochPlan
    feed: TrainFeed
    run_chunk: Callable
    seeds: Sequence[int] | None
    loss_names: Sequence[str]
    method: str
    halt: bool
    on_steps: Callable[[int, int, dict], None] | None
    progress: bool
    epochs: int


def train_epoch(ctx: EpochContext, state: RunState, meta: dict, guard: RunGuard) -> RunState:
    """Runs the remaining calls of epoch ``state.epoch``, updating ``meta`` (running sums,
    global step, wall times); ``guard`` may checkpoint and interrupt between calls."""
    epoch, start, plan = int(state.epoch), int(state.chunk), ctx.plan
    if meta["sums"] is None or start == 0:
        meta["sums"] = [dict() for _ in range(1 if ctx.seeds is None else len(ctx.seeds))]
    bar = _progress(ctx.progress, plan.steps, epoch, ctx.epochs, start * plan.chunk)
    stopped = jnp.asarray(state.stopped)
    valid = plan.valid
    t_call = time.perf_counter()  # a call's time includes drawing (streamed: gathering) its rows
    for c, block, positions in ctx.feed.calls(state.data_key, epoch, start):
        train, outs = ctx.run_chunk(state.train, block, positions, valid[c], stopped)
        state = state._replace(train=train, chunk=np.array(c + 1, np.int64))
        m = int(valid[c].sum())
        _record_call(ctx, meta, epoch, c * plan.chunk, m, jax.device_get(outs))
        seconds = time.perf_counter() - t_call
        meta["train_seconds"] += seconds
        if c > 0 or epoch > 0:  # the first call of a run compiles
            meta["step_times"].append(seconds / max(m, 1))
        if bar is not None:
            bar.update(m)
            means = StepMeans(meta["sums"][0])
            if means.count:
                bar.set_postfix({nm: f"{x:.4f}" for nm, x in zip(ctx.loss_names, means.means()["losses"])})
        guard.after_call(state, meta, epoch, c + 1 < plan.n_chunks)
        t_call = time.perf_counter()
    if bar is not None:
        bar.close()
    return state


def _record_call(ctx: EpochContext, meta: dict, epoch: int, first_step: int, m: int, outs: dict) -> None:
    """The host's part of a call of ``m`` real steps: finiteness, running sums, ``on_steps``."""
    _check_finite(outs, ctx.seeds, epoch, first_step, meta["global_step"], ctx.loss_names, ctx.method, ctx.halt)
    counted, finite = outs.pop("counted"), outs.pop("finite")
    outs.pop("loss_finite")
    for i, sums in enumerate(meta["sums"]):
        ix = seed_index(i, ctx.seeds)
        StepMeans(sums).add({k: v[ix] for k, v in outs.items()}, counted[ix], finite[ix])
    if ctx.on_steps is not None:
        ctx.on_steps(epoch, meta["global_step"], {k: (v[:m] if ctx.seeds is None else v[:, :m])
                                                  for k, v in outs.items()})
    meta["global_step"] += m


def train_record(epoch: int, global_step: int, means: StepMeans, names: Sequence[str], seed: int) -> dict:
    """An epoch record's training part: mean loss and balancer weight of each task,
    skipped steps, and with diagnostics the mean gradient norms and pairwise cosines."""
    mean = means.means()
    record: dict[str, Any] = {
        "epoch": epoch,
        "step": global_step,
        "seed": seed,
        "train_loss": dict(zip(names, map(float, mean.get("losses", [np.nan] * len(names))))),
        "weights": dict(zip(names, map(float, mean.get("weights", [np.nan] * len(names))))),
    }
    if means.skipped:
        record["skipped_steps"] = int(means.skipped)
    if "grad_norms" in mean:
        record["grad_norms"] = dict(zip(names, map(float, mean["grad_norms"])))
        record["grad_cos"] = {f"{names[a]}|{names[b]}": float(mean["grad_cos"][a][b])
                              for a in range(len(names)) for b in range(a + 1, len(names))}
    return record


def _check_finite(outs, seeds, epoch, first_step, global_step, names, method, halt):
    """Raises :class:`NonFiniteLossError` for the first rejected step (``halt``)."""
    if not halt:
        return
    bad = outs["counted"] & ~outs["finite"]
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    i, s_ = (None, int(where[0])) if seeds is None else (int(where[0]), int(where[1]))
    pick = (lambda v: v[s_]) if seeds is None else (lambda v: v[i, s_])
    loss_finite = pick(outs["loss_finite"])
    losses = pick(outs["losses"])
    if not loss_finite.all():
        t = int(np.flatnonzero(~loss_finite)[0])
        task, value, what = names[t], float(losses[t]), "loss"
    else:
        task, value, what = "", float("nan"), "gradient or balancer output"
    raise NonFiniteLossError(epoch, first_step + s_, global_step + s_, task, value, method,
                             None if seeds is None else seeds[i], what)


def _progress(enabled: bool, total: int, epoch: int, epochs: int, done: int = 0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False,
                dynamic_ncols=True)
