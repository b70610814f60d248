"""Two processes (``--config.distributed=True``, gloo collectives on CPU, one device each)
train one run: a process that dies makes the other exit at once with a one-line error, a
SIGTERM to one process checkpoints and stops both, the two resume from the last checkpoint
and end with the metrics of a one-process run, and only process 0 writes the run's files
(the processes are audited with ``sys.addaudithook``)."""

import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 120  # per launch; every process is killed after it

# 2,000 rows, batch 128: 15 steps an epoch in 4 calls; pcgrad's config check builds a model
# (touches the JAX backend), so the process group must be joined before validation.
ARGS = ["--config=experiments/configs/synthetic.py:smoke", "--config.epochs=3", "--config.steps_per_call=4",
        "--config.balancer.name=pcgrad", "--config.distributed=True", "--noprogress"]

# mtl-train that logs, one JSON line each, the files it opens for writing (or removes, renames)
# in the workdir outside checkpoints/ and the first global step it trains, and that sends itself
# KILL_SIG once global step KILL_AT is reached.
DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    log, workdir = os.environ["AUDIT_LOG"], os.path.realpath(os.environ["WORKDIR"])
    at, sig = int(os.environ.get("KILL_AT", "0")), getattr(signal, os.environ.get("KILL_SIG", "SIGKILL"))

    def note(record):
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\\n")

    def audit(event, args):
        if event not in ("open", "os.remove", "os.rename", "shutil.rmtree") or isinstance(args[0], int):
            return
        path = os.path.realpath(os.fsdecode(args[0]))
        if not path.startswith(workdir + os.sep) or path.startswith(os.path.join(workdir, "checkpoints")):
            return
        if event == "open":
            mode, flags = args[1] or "", args[2] or 0
            if not (any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                return
        note({"write": os.path.relpath(path, workdir)})

    sys.addaudithook(audit)
    import mtl.train.loop
    fit = mtl.train.loop.fit

    def audited_fit(*args, **kwargs):
        user, first_seen = kwargs.get("on_steps"), []

        def on_steps(epoch, first, outs):
            if user is not None:
                user(epoch, first, outs)
            if not first_seen:
                first_seen.append(first)
                note({"first_step": first})
            if at and first + len(outs["losses"]) >= at:
                os.kill(os.getpid(), sig)

        kwargs["on_steps"] = on_steps
        return fit(*args, **kwargs)

    mtl.train.loop.fit = audited_fit
    from mtl.cli import run
    run(["mtl-train"] + sys.argv[1:])
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(workdir, tmp, num_processes, kill=None):
    """Runs the processes of one run (``kill=(process, step, signal)``: that process sends itself
    the signal at that global step); returns ``(returncode, stderr, audit records)`` by process id."""
    port, tag, procs = _free_port(), f"{workdir.name}-{len(list(tmp.glob('*.err')))}", []
    try:
        for i in range(num_processes):
            env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
                   "JAX_NUM_PROCESSES": str(num_processes), "JAX_PROCESS_ID": str(i),
                   "MTL_DIST_HEARTBEAT_TIMEOUT_S": "10", "MTL_DIST_SHUTDOWN_TIMEOUT_S": "10",
                   "MTL_DIST_INIT_TIMEOUT_S": "60", "WORKDIR": str(workdir),
                   "AUDIT_LOG": str(tmp / f"{tag}.{i}.audit"), "KILL_AT": str(kill[1] if kill and kill[0] == i else 0),
                   "KILL_SIG": kill[2] if kill else "SIGKILL"}
            with open(tmp / f"{tag}.{i}.err", "w") as err:
                procs.append(subprocess.Popen([sys.executable, "-c", DRIVER, f"--workdir={workdir}", *ARGS],
                                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err))
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    out = []
    for i, rc in enumerate(codes):
        audit = tmp / f"{tag}.{i}.audit"
        records = [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []
        out.append((rc, (tmp / f"{tag}.{i}.err").read_text(), records))
    return out


def _written(records):
    return {r["write"] for r in records if "write" in r}


def _first_step(records):
    return [r["first_step"] for r in records if "first_step" in r][:1]


def _differences(a, b, path=""):
    """Largest relative difference of the float leaves of two JSON trees; other leaves must match."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, a, b)
        return max([0.0] + [_differences(a[k], b[k], f"{path}.{k}") for k in a])
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, a, b)
        return max([0.0] + [_differences(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))])
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), (path, a, b)
            return 0.0
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    assert a == b, (path, a, b)
    return 0.0


def _results(workdir):
    """summary.json and metrics.jsonl without wall times and the device count."""
    summary = json.loads((workdir / "summary.json").read_text())
    for key in ("train_seconds", "step_seconds", "compile_seconds", "compile_cache_misses", "devices"):
        summary.pop(key)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("seconds")
    return [summary, lines]


def test_two_processes_die_resume_and_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    [(rc, err, _)] = _launch(one, tmp_path, 1)
    assert rc == 0, err[-3000:]

    # process 1 dies in epoch 1, after epoch 0's checkpoint (step 15): process 0 fails in its next
    # collective and exits with one line (a hang would end in TimeoutExpired)
    (rc0, err0, audit0), (rc1, err1, audit1) = _launch(two, tmp_path, 2, kill=(1, 20, "SIGKILL"))
    assert rc1 == -9, (rc1, err1[-3000:])
    assert rc0 == 1, (rc0, err0[-3000:])
    assert err0.strip().splitlines()[-1].startswith(
        "error: process 0 of 2: a cross-process operation failed, most likely because another process of the "
        "run died"), err0[-3000:]
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["15"]
    assert "metrics.jsonl" in _written(audit0) and _written(audit1) == set()

    # both again, resuming from step 15; SIGTERM to process 1 alone in epoch 2 (after the call that
    # ends at step 37): both finish that call, write a checkpoint together and exit with 128 + 15
    for rc, err, audit in _launch(two, tmp_path, 2, kill=(1, 35, "SIGTERM")):
        assert rc == 143, (rc, err[-3000:])
        assert err.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM at epoch 2 (global step 38)"), \
            err[-3000:]
        assert _first_step(audit) == [15]
    assert sorted(int(p.name) for p in (two / "checkpoints").iterdir()) == [30, 38]

    # both again: they resume from step 38 and finish
    runs = _launch(two, tmp_path, 2)
    for rc, err, audit in runs:
        assert rc == 0, err[-3000:]
        assert _first_step(audit) == [38]
    written = _written(runs[0][2])
    assert {"config.json", "metrics.jsonl", "summary.json"} <= written, written
    assert any(name.startswith("events.out.tfevents.") for name in written), written
    assert _written(runs[1][2]) == set()

    # the same results as one process up to float32 rounding of the cross-device sums
    assert json.loads((two / "summary.json").read_text())["devices"] == 2
    worst = _differences(_results(one), _results(two))
    print(f"largest relative difference, two processes vs one: {worst:.2e}")
    assert worst < 1e-6
