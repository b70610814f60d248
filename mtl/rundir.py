"""Run directories: what ``mtl-train`` writes, whether a run finished, and reading it back.

A run directory holds

* ``config.json``: the resolved config (every hyperparameter, defaults included);
* ``metrics.jsonl``: one JSON line per epoch (train losses, mean task weights,
  optional gradient diagnostics, and ``{split: {task: {metric: value}}}``);
* ``steps.jsonl`` (with ``diagnostics=step``): one line per train step;
* ``summary.json``: ``best_epoch``, ``validation`` and ``test`` at the best
  validation epoch, why training stopped, wall times, and what was run (or
  ``error`` / ``interrupted`` when the run did not finish);
* ``events.out.tfevents.*``: the same curves for TensorBoard;
* ``checkpoints/``: orbax checkpoints; rerunning the same command resumes.

With several seeds each seed's files go to ``seed_<s>/`` and the top
``summary.json`` aggregates them (mean and std).

Whether a run is done is decided in one place, :func:`run_status`; everything
that asks (``mtl-train`` before training, ``mtl-bench`` before each cell, the
benchmark tables) goes through it, and reads a run back with
:func:`seed_statuses` (one status, with its summary, per seed) and
:func:`read_curves`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess
from dataclasses import dataclass, field

from mtl.config import ConfigError

FINISHED, INTERRUPTED, FAILED, ABSENT = "finished", "interrupted", "failed", "absent"


RUN_FILES = ("config.json", "metrics.jsonl", "steps.jsonl", "summary.json")


def _diff(a, b, prefix=""):
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def clear_workdir(workdir: pathlib.Path) -> None:
    for name in RUN_FILES:
        (workdir / name).unlink(missing_ok=True)
    for p in list(workdir.glob("events.out.tfevents.*")):
        p.unlink()
    for d in [workdir / "checkpoints", *workdir.glob("seed_*")]:
        if d.is_dir():
            shutil.rmtree(d)


def prepare_workdir(workdir: pathlib.Path, config_json: dict, overwrite: bool) -> dict | None:
    """Checks the workdir against the config: returns a finished run's summary (nothing
    to do), ``None`` to train (fresh or resuming); refuses another config's workdir. A sweep's
    values may change (each point is checked in its own folder): a grid grows by its new points."""
    workdir.mkdir(parents=True, exist_ok=True)
    existing = workdir / "config.json"
    if overwrite:
        clear_workdir(workdir)
    elif existing.is_file():
        try:
            old = json.loads(existing.read_text())
        except json.JSONDecodeError:
            old = None
        if _but_sweep_values(old) != _but_sweep_values(config_json):
            diff = _diff(old or {}, config_json)
            raise ConfigError(f"--workdir={workdir} holds a run of a different config ({'; '.join(diff[:4])}"
                              f"{'; ...' if len(diff) > 4 else ''}); use another --workdir, or --overwrite")
        status = run_status(workdir)
        if status.finished and old == config_json:
            return status.summary
    existing.write_text(json.dumps(config_json, indent=2, sort_keys=True))
    return None


def _but_sweep_values(config_json: dict | None) -> dict | None:
    return config_json and {**config_json, "sweep": sorted(config_json.get("sweep") or {})}


class RunFiles:
    """metrics.jsonl / steps.jsonl / TensorBoard writers of one seed's folder."""

    def __init__(self, folder: pathlib.Path, names, diagnostics: str, tensorboard: bool):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.names = folder, list(names)
        self.metrics = folder / "metrics.jsonl"
        self.steps = folder / "steps.jsonl" if diagnostics == "step" else None
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir=str(folder), flush_secs=30)

    def reset(self, history: list[dict], steps_done: int) -> None:
        """Rewrites the files to what a checkpoint holds (resume) or empties them (fresh start)."""
        with self.metrics.open("w") as f:
            for record in history:
                f.write(json.dumps(record) + "\n")
        if self.steps is not None:
            keep = []
            if self.steps.is_file() and steps_done:
                with self.steps.open() as f:
                    for i, line in enumerate(f):
                        if i >= steps_done:
                            break
                        keep.append(line)
            self.steps.write_text("".join(keep))

    def epoch(self, record: dict) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            e = record["epoch"]
            scalars = {f"{group}/{task}": v for group in ("train_loss", "weights", "grad_norms")
                       for task, v in record.get(group, {}).items()}
            scalars.update({f"grad_cos/{pair}": v for pair, v in record.get("grad_cos", {}).items()})
            scalars.update({f"{split}/{task}/{m}": v for split in ("validation", "test", "train")
                            for task, ms in record.get(split, {}).items() for m, v in ms.items()})
            for tag, v in scalars.items():
                if math.isfinite(v):  # an undefined metric (AUC of one class) is left out of the curves
                    self._tb.add_scalar(tag, v, e)
            self._tb.flush()

    def step_lines(self, epoch: int, first_step: int, outs: dict) -> None:
        names = self.names
        with self.steps.open("a") as f:
            for i in range(len(outs["losses"])):
                rec = {"epoch": epoch, "step": first_step + i,
                       "losses": dict(zip(names, map(float, outs["losses"][i]))),
                       "weights": dict(zip(names, map(float, outs["weights"][i])))}
                if "grad_norms" in outs:
                    rec["grad_norms"] = dict(zip(names, map(float, outs["grad_norms"][i])))
                    rec["grad_cos"] = {f"{names[a]}|{names[b]}": float(outs["grad_cos"][i][a, b])
                                       for a in range(len(names)) for b in range(a + 1, len(names))}
                f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes to the code, new files not yet
    committed included), or ``unknown``.

    Changes under ``results/`` do not count: they are what runs write (a benchmark
    writing its tables into the checkout must not mark its own later cells dirty)."""
    root = root or pathlib.Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        status = ["git", "status", "--porcelain", "--untracked-files=normal", "--", ".", ":(exclude)results"]
        dirty = subprocess.run(status, cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def point_name(values) -> str:
    """The directory name of one hyperparameter point of a sweep or tuning grid:
    ``{"learning_rate": 0.001, "balancer.hparams.weights": (0.3, 0.7)}`` ->
    ``balancer.hparams.weights=0.3:0.7,learning_rate=0.001`` (config paths sorted, so the
    name does not depend on the order a grid declares them in; numbers as their ``repr``;
    the point's ``config.json`` holds the resolved values)."""
    if not values:
        raise ValueError("point_name: no hyperparameter values")
    parts = []
    for key, value in sorted(values.items()):
        text = ":".join(map(repr, value)) if isinstance(value, (list, tuple)) else str(value)
        if any(c in f"{key}{text}" for c in ",/\\=: \n") and not isinstance(value, (list, tuple)):
            raise ValueError(f"point_name: {key}={text!r} cannot name a directory")
        parts.append(f"{key}={text}")
    return ",".join(parts)


# ---------------------------------------------------------------------------
# Reading: is a run finished, and what did it write
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    """Where a run directory (or one seed's folder) stands.

    ``state`` is ``finished``, ``interrupted`` (stopped by a signal, or
    started and never finished: killed or still running), ``failed`` (an
    error, or a summary without results) or ``absent`` (nothing written);
    ``reason`` says why when not finished; ``summary`` is the parsed
    ``summary.json`` (empty when there is none).
    """

    path: pathlib.Path
    state: str
    reason: str = ""
    summary: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state == FINISHED

    def __str__(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else self.state


def run_status(run_dir: str | os.PathLike) -> RunStatus:
    """Whether ``run_dir`` holds a finished run, and why not.

    Finished: ``summary.json`` holds ``validation`` and ``test`` metrics (one
    seed, or one seed's folder) or names its ``seeds`` (the aggregate of seeds
    trained side by side, written only once every seed has finished), with
    neither ``error`` nor ``interrupted``; a sweep's directory (its summary names
    its ``points``) when every point finished.
    """
    path = pathlib.Path(run_dir)
    summary_path = path / "summary.json"
    if not path.is_dir():
        return RunStatus(path, ABSENT, f"no directory {path}")
    if not summary_path.is_file():
        if (path / "config.json").is_file() or (path / "metrics.jsonl").is_file():
            return RunStatus(path, INTERRUPTED, "no summary.json (started, not finished: killed, or still running)")
        return RunStatus(path, ABSENT, "no summary.json or config.json (never started)")
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return RunStatus(path, FAILED, f"summary.json is not valid JSON ({e})")
    if not isinstance(summary, dict):
        return RunStatus(path, FAILED, "summary.json is not a JSON object")
    if "error" in summary:
        return RunStatus(path, FAILED, str(summary["error"]), summary)
    if "interrupted" in summary:
        return RunStatus(path, INTERRUPTED, str(summary["interrupted"]), summary)
    if isinstance(summary.get("points"), dict):  # a sweep's WORKDIR: finished when every point is
        left = [name for name, state in summary["points"].items() if state != FINISHED]
        if left:
            return RunStatus(path, INTERRUPTED, f"{len(left)} of {len(summary['points'])} sweep points not finished "
                             f"(e.g. {left[0]})", summary)
        return RunStatus(path, FINISHED, "", summary)
    if isinstance(summary.get("seeds"), list) or (isinstance(summary.get("test"), dict)
                                                  and isinstance(summary.get("validation"), dict)):
        return RunStatus(path, FINISHED, "", summary)
    return RunStatus(path, FAILED, "summary.json holds no validation/test metrics", summary)


def read_config(run_dir: str | os.PathLike) -> dict:
    """The run's ``config.json`` (empty when absent or unreadable)."""
    path = pathlib.Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def seed_statuses(run_dir: str | os.PathLike) -> dict[int | None, RunStatus]:
    """``{seed: status}`` of each seed of a finished run.

    Seeds trained side by side: the status of each ``seed_<s>/`` the aggregate
    names. One seed: ``{seed: run_status(run_dir)}`` (the seed from the summary
    or ``config.json``; ``None`` when neither names it). A run that did not
    finish: ``{None: its status}``.
    """
    top = run_status(run_dir)
    if not top.finished:
        return {None: top}
    if isinstance(top.summary.get("seeds"), list):
        folders = {int(k): v for k, v in (top.summary.get("runs") or {}).items()}
        seeds = sorted({int(s) for s in top.summary["seeds"]} | set(folders))
        return {s: run_status(top.path / folders.get(s, f"seed_{s}")) for s in seeds}
    seed = next((v for v in (top.summary.get("seed"), read_config(run_dir).get("seed")) if isinstance(v, int)), None)
    return {seed: top}


def read_curves(folder: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a run (or seed) folder's ``metrics.jsonl`` (empty when absent).

    A truncated last line (a run killed while writing) is dropped; a malformed
    line elsewhere is an error naming the file and line.
    """
    path = pathlib.Path(folder) / "metrics.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line ({e})") from None
    return out
