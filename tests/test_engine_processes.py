"""The engine across processes: a run killed (SIGTERM, then SIGKILL) and resumed ends
exactly like an uninterrupted one; 4 devices compute what 1 device computes."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]


COMMON = ["--config=experiments/configs/synthetic.py:smoke", "--config.epochs=4", "--config.steps_per_call=4",
          "--config.balancer.name=famo", "--config.seed=3", "--config.diagnostics=step",
          "--noprogress"]  # 15 steps an epoch, 4 calls

# Runs mtl-train, sending itself a signal once the run reaches global step KILL_AT.
DRIVER = textwrap.dedent("""
    import os, signal, sys
    import mtl.train.run
    fit, at, sig = mtl.train.run.fit, int(os.environ["KILL_AT"]), getattr(signal, os.environ["KILL_SIG"])

    def killing_fit(*args, **kwargs):
        user = kwargs.get("on_steps")

        def on_steps(epoch, first, outs):
            if user is not None:
                user(epoch, first, outs)
            if first + len(outs["losses"]) >= at:
                os.kill(os.getpid(), sig)

        kwargs["on_steps"] = on_steps
        return fit(*args, **kwargs)

    mtl.train.run.fit = killing_fit  # what train_and_evaluate calls
    from mtl.cli import run
    run(["mtl-train"] + sys.argv[1:])
""")


def _run(args, env=None, driver=False):
    cmd = [sys.executable, "-c", DRIVER] if driver else [sys.executable, "-m", "mtl.train"]
    return subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _lines(path):
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record.pop("seconds")  # wall time
        out.append(record)
    return out


def _summary(path):
    s = json.loads(path.read_text())
    for k in ("train_seconds", "step_seconds", "compile_seconds", "compile_cache_misses"):
        s.pop(k)
    return s


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    ref, resumed = tmp_path / "ref", tmp_path / "resumed"
    r = _run(COMMON + [f"--workdir={ref}"])
    assert r.returncode == 0, r.stderr[-3000:]

    # SIGTERM in the middle of epoch 1: the call finishes, a checkpoint is written, exit 128 + 15
    r = _run(COMMON + [f"--workdir={resumed}"], {"KILL_AT": "20", "KILL_SIG": "SIGTERM"}, driver=True)
    assert r.returncode == 143, (r.returncode, r.stderr[-3000:])
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: interrupted by SIGTERM at epoch 1") and "resume" in last, last
    assert len((resumed / "metrics.jsonl").read_text().splitlines()) == 1

    # resumed, then SIGKILL in the middle of epoch 2 (no chance to write anything)
    r = _run(COMMON + [f"--workdir={resumed}"], {"KILL_AT": "40", "KILL_SIG": "SIGKILL"}, driver=True)
    assert r.returncode == -9, (r.returncode, r.stderr[-3000:])
    assert len((resumed / "metrics.jsonl").read_text().splitlines()) == 2

    # resumed to the end
    r = _run(COMMON + [f"--workdir={resumed}"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert _lines(resumed / "metrics.jsonl") == _lines(ref / "metrics.jsonl")
    # every step's line once, as the uninterrupted run wrote them (lines after the last checkpoint dropped)
    assert (resumed / "steps.jsonl").read_text() == (ref / "steps.jsonl").read_text()
    assert len((ref / "steps.jsonl").read_text().splitlines()) == 4 * 15
    assert _summary(resumed / "summary.json") == _summary(ref / "summary.json")

    # the same command again: nothing to do; another config in that workdir: refused
    r = _run(COMMON + [f"--workdir={resumed}"])
    assert r.returncode == 0 and "best epoch" in r.stdout
    r = _run(COMMON + [f"--workdir={resumed}", "--config.learning_rate=0.01"])
    assert r.returncode == 2 and "different config (learning_rate: 0.001 -> 0.01)" in r.stderr


FOUR_DEVICES = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 --xla_cpu_use_fusion_emitters=false"
    import jax, numpy as np, optax
    import mtl.balancers as mb, mtl.data as md, mtl.models as mm
    from mtl.train import fit
    assert jax.device_count() == 4
    data = md.load("synthetic", correlation=0.9, num_train=1024, num_validation=256, num_test=256)
    model = mm.get("shared_bottom", num_tasks=2, num_numeric=100, bottom_hidden=(32,))
    out = {}
    for name, seed in [("ew", 0), ("pcgrad", 0), ("mgda", 0), ("nash_mtl", 0), ("pcgrad", [0, 1])]:
        runs = [fit(model, mb.get(name), data, optimizer=optax.adam(3e-3), epochs=2, batch_size=128, seed=seed,
                    num_devices=d, progress=False) for d in (1, 4)]
        params = [r["state"].train.params for r in runs]
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree_util.tree_leaves(params[0]), jax.tree_util.tree_leaves(params[1])))
        scale = max(float(np.max(np.abs(np.asarray(a)))) for a in jax.tree_util.tree_leaves(params[0]))
        one, four = [r if "runs" not in r else r["runs"][1] for r in runs]
        rel = max(abs(one["test"][t]["mse"] - four["test"][t]["mse"]) / one["test"][t]["mse"] for t in one["test"])
        out[f"{name}{'' if isinstance(seed, int) else '_seeds'}"] = {"param_diff": diff, "param_scale": scale,
                                                                      "test_mse_rel": rel}
    print("RESULT" + json.dumps(out))
""")


def test_four_devices_match_one_device():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", FOUR_DEVICES], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.split("RESULT", 1)[1])
    for name, x in result.items():
        # the same global computation; only the order of the cross-device sums differs
        assert x["param_diff"] < 1e-4 * x["param_scale"], (name, x)
        assert x["test_mse_rel"] < 1e-4, (name, x)
    print(result)


def test_batch_size_must_split_over_devices():
    code = textwrap.dedent("""
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        from mtl.train.devices import check_batch_size, make_mesh
        try:
            check_batch_size(130, make_mesh())
        except ValueError as e:
            print(e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert "batch_size 130 does not divide evenly over 4 devices; use a multiple of 4 (e.g. 128 or 132)" in r.stdout
