"""Run directories: what ``mtl-train`` writes, and whether a run is finished.

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
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import subprocess

from mtl.config import ConfigError


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
    to do), ``None`` to train (fresh or resuming); refuses another config's workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    existing = workdir / "config.json"
    if overwrite:
        clear_workdir(workdir)
    elif existing.is_file():
        try:
            old = json.loads(existing.read_text())
        except json.JSONDecodeError:
            old = None
        if old != config_json:
            diff = _diff(old or {}, config_json)
            raise ConfigError(f"--workdir={workdir} holds a run of a different config ({'; '.join(diff[:4])}"
                              f"{'; ...' if len(diff) > 4 else ''}); use another --workdir, or --overwrite")
        summary = workdir / "summary.json"
        if summary.is_file():
            try:
                s = json.loads(summary.read_text())
            except json.JSONDecodeError:
                s = {}
            if s and "error" not in s and "interrupted" not in s:
                return s
    existing.write_text(json.dumps(config_json, indent=2, sort_keys=True))
    return None


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


def git_commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = pathlib.Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
