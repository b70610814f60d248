"""Smoke tests of the speed benchmarks' harness (tiny sizes: correctness and format, not speed)."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_gpu_script_runs_on_cpu_and_writes_json(tmp_path):
    """benchmarks/gpu.sh unchanged on the CPU (small sizes): step times, vectorised seeds, census-size epochs."""
    # Only the harness is checked here, not speed: rbg keys (model.init's threefry draws dominated the
    # compile time) and XLA:CPU without backend optimisations keep the run short.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DEFAULT_PRNG_IMPL": "rbg", "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
           "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "devices: [CpuDevice" in proc.stdout
    seeds = json.loads((tmp_path / "seeds_throughput.json").read_text())
    assert {(r["method"], r["seeds"]) for r in seeds["rows"]} == {("ew", 1), ("ew", 2), ("pcgrad", 1), ("pcgrad", 2)}
    assert all(r["step_ms"] > 0 and r["speedup_vs_sequential"] > 0 for r in seeds["rows"])
    epochs = json.loads((tmp_path / "census_epoch.json").read_text())
    assert set(epochs["methods"]) == {"ew", "pcgrad"} and all(m["step_ms"] > 0 for m in epochs["methods"].values())
    out = tmp_path / "step_time.json"
    if not HAS_TORCH:
        assert "PyTorch is not installed" in proc.stdout
    data = json.loads(out.read_text())
    assert data["meta"]["torch"] is None if not HAS_TORCH else data["meta"]["torch"].startswith("2.")
    assert data["peak"]["tiny"]["jax_peak"] > 0
    rows = {(r["method"], r["T"]): r for r in data["results"]}
    assert set(rows) == {("ew", 2), ("pcgrad", 2), ("nash_mtl", 2)}
    for r in rows.values():
        assert r["size"] == "tiny" and r["steps_per_call"] == 2
        for k in ("mtl_ms", "mtl_dispatched_ms", "ew_ratio", "mtl_dispatched_ew_ratio", "mtl_steps_per_s",
                  "gflop_per_step", "mtl_gflops", "mtl_peak_fraction"):
            assert np.isfinite(r[k]) and r[k] > 0, (k, r[k])
        assert len(r["rounds_ms"]["mtl"]) == 1
        torch_keys = ("torch_ms", "ratio", "torch_ew_ratio", "torch_steps_per_s", "torch_gflops")
        for k in torch_keys:
            if HAS_TORCH:
                assert np.isfinite(r[k]) and r[k] > 0, (k, r[k])
            else:
                assert r[k] is None, (k, r[k])
    assert rows["ew", 2]["ew_ratio"] == 1.0
    # the Jacobian step does more work than one backward pass
    assert rows["pcgrad", 2]["gflop_per_step"] > rows["ew", 2]["gflop_per_step"]


def test_scanned_step_seconds():
    import jax.numpy as jnp

    from benchmarks.timing import DispatchedSteps, ScannedSteps, scanned_step_seconds

    def step(state, batch):
        return state + jnp.sum(batch["x"] @ batch["x"].T), {"loss": state}

    batches = {"x": jnp.ones((3, 8, 4))}
    assert scanned_step_seconds(step, jnp.zeros(()), batches, rounds=2) > 0
    state, outs = ScannedSteps(step)(jnp.zeros(()), batches)
    assert float(state) == 3 * 8 * 8 * 4 and outs["loss"].shape == (3,)
    d = DispatchedSteps(step, jnp.zeros(()), {"x": batches["x"][0]})
    assert d.flops > 0
    state, sec = d.time(jnp.zeros(()), [{"x": batches["x"][i]} for i in range(3)])
    assert float(state) == 3 * 8 * 8 * 4 and sec > 0


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch (optional extra bench-torch) is not installed")
def test_torch_solvers_conditions():
    from benchmarks import torch_mmoe as tm

    rng = np.random.default_rng(0)
    for t in (2, 3, 5):
        a = rng.normal(size=(t, 20))
        a[1] -= a[0]  # some conflict
        g = a @ a.T
        w = tm.mgda_weights(g)
        assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
        # min-norm optimality: no vertex lowers the objective's directional derivative
        assert (g @ w).min() >= w @ g @ w - 1e-3 * np.trace(g)
        alpha = tm.nash_weights(g)
        np.testing.assert_allclose((g @ alpha) * alpha, 1.0, rtol=1e-4)
        c = tm.cagrad_weights(g)
        assert (c > 0).all() and np.isfinite(c).all()
        p = tm.pcgrad_weights(g, np.random.default_rng(1))
        assert p.shape == (t,)
    # PCGrad on two conflicting gradients: both projections, closed form
    g = np.array([[1.0, -0.5], [-0.5, 2.0]])
    # g1^PC = g1 + g2 / 4, g2^PC = g2 + g1 / 2
    np.testing.assert_allclose(tm.pcgrad_weights(g, np.random.default_rng(0)), [1.5, 1.25])
