"""Hyperparameter sweeps in one program (mtl.train.sweep): each replica equals the same
values trained alone; the config refuses what cannot be swept; the split into several
programs; the per-point run directories."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mtl.balancers as mb
import mtl.data as md
import mtl.models as mm
from experiments.configs.synthetic import get_config
from mtl.balancers.base import Balancer, EmptyState, clip_by_global_norm
from mtl.config import ConfigError, build_optimizer, resolve, sweep_points, validate
from mtl.rundir import point_name, run_status, seed_statuses
from mtl.train import fit
from mtl.train.run import train_and_evaluate
from mtl.train.sweep import Replicas, replica_values, split_points

# vmap over replicas batches the matmuls differently: the numbers agree to float32 rounding,
# not bit for bit (2e-8 relative at most in the metrics here; a replica's values are carried
# in the optimizer and balancer states, which builds the same updates as a run alone).
REL, PARAMS_RTOL = 1e-6, 1e-4


@functools.cache
def _data():
    return md.load("synthetic", correlation=0.9, num_train=1500, num_validation=300, num_test=300)


@functools.cache
def _model():
    return mm.get("shared_bottom", num_tasks=2, num_numeric=100)


def _fit(balancer, optimizer=None, **kw):
    kw.setdefault("patience", 1)
    return fit(_model(), balancer, _data(), optimizer=optimizer, epochs=4, batch_size=128, progress=False, **kw)


def _assert_same_run(together, alone):
    assert together["best_epoch"] == alone["best_epoch"] and together["epochs_run"] == alone["epochs_run"]
    for task, x in alone["history"][-1]["train_loss"].items():
        assert together["history"][-1]["train_loss"][task] == pytest.approx(x, rel=REL), task
    for split in ("validation", "test"):
        for task, metrics in alone[split].items():
            for m, x in metrics.items():
                assert together[split][task][m] == pytest.approx(x, rel=REL, abs=1e-6), (split, task, m)
    for x, y in zip(jax.tree_util.tree_leaves(together["params"]), jax.tree_util.tree_leaves(alone["params"])):
        np.testing.assert_allclose(x, y, rtol=PARAMS_RTOL, atol=1e-6)


def _differ(a, b):
    """Whether two runs trained differently (their last epochs' training losses)."""
    return a["history"][-1]["train_loss"] != b["history"][-1]["train_loss"]


def test_learning_rate_and_weight_decay_replicas_match_runs_alone():
    points = [{"learning_rate": lr, "weight_decay": wd} for lr in (1e-2, 1e-3) for wd in (0.0, 0.3)]
    replicas = Replicas(replica_values(points, {}, 1), lambda **h: mb.get("ew", **h), adamw=True)
    together = _fit(mb.get("ew"), seed=[5] * 4, replicas=replicas)
    # alone: Adam for no weight decay, AdamW otherwise (what a run of that config builds)
    alone = [_fit(mb.get("ew"), build_optimizer(p["learning_rate"], p["weight_decay"]), seed=5) for p in points]
    assert _differ(alone[0], alone[1]) and _differ(alone[0], alone[2])  # each value changes the run
    assert len({r["epochs_run"] for r in alone}) > 1  # replicas stop early at different epochs
    for t, a in zip(together["runs"], alone):
        _assert_same_run(t, a)


@pytest.mark.parametrize("method,name,values", [("cagrad", "c", (0.1, 0.9)), ("famo", "gamma", (1e-3, 0.5)),
                                                ("dwa", "temperature", (0.3, 5.0)), ("fairgrad", "alpha", (0.5, 2.0))])
def test_balancer_hparam_replicas_match_runs_alone(method, name, values):
    points = [{f"balancer.hparams.{name}": v} for v in values]
    seeds = [1]
    replicas = Replicas(replica_values(points, {"learning_rate": 3e-3, "weight_decay": 0.0}, len(seeds)),
                        lambda **h: mb.REGISTRY[method](**h), adamw=False)
    # no early stopping: DWA's temperature acts from the third epoch on
    together = _fit(mb.get(method, **{name: values[0]}), seed=seeds * len(values), replicas=replicas, patience=0)
    alone = [_fit(mb.get(method, **{name: v}), optax.adam(3e-3), seed=s, patience=0) for v in values for s in seeds]
    assert _differ(alone[0], alone[1])  # the two values train differently
    for t, a in zip(together["runs"], alone):
        _assert_same_run(t, a)


def test_a_traced_max_norm_clips_as_a_concrete_one():
    tree = {"w": jnp.array([3.0, 4.0])}  # norm 5
    clip = jax.jit(clip_by_global_norm)
    np.testing.assert_allclose(clip(tree, jnp.float32(1.0))[0]["w"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(clip(tree, jnp.float32(10.0))[0]["w"], [3.0, 4.0])
    np.testing.assert_allclose(clip(tree, jnp.float32(0.0))[0]["w"], [3.0, 4.0])  # <= 0: no clipping


def _untraceable(*, c: float = 0.5) -> Balancer:
    """A loss-weighting method whose weights come from a Python branch on ``c``."""
    scale = 2.0 if c > 0.5 else 1.0
    return Balancer(init=lambda num_tasks: EmptyState(), name="branchy",
                    update=lambda losses, grads, state, *, key=None: (None, scale * jnp.ones_like(losses), state))


def test_a_hyperparameter_used_in_python_control_flow_is_refused(monkeypatch):
    monkeypatch.setitem(mb.REGISTRY, "branchy", _untraceable)
    config = resolve(get_config("smoke"), [("balancer.name", "branchy"), ("sweep.balancer.hparams.c", "0.2,0.7")])
    with pytest.raises(ConfigError, match=r"^config\.sweep\.balancer\.hparams\.c: balancer 'branchy' cannot take 'c'"):
        validate(config)
    replicas = Replicas(replica_values([{"balancer.hparams.c": 0.2}, {"balancer.hparams.c": 0.7}],
                                       {"learning_rate": 1e-2, "weight_decay": 0.0}, 1), _untraceable, adamw=False)
    with pytest.raises(ValueError, match=r"^sweep: balancer 'branchy' cannot take balancer\.hparams\.c"):
        _fit(_untraceable(), seed=[0, 0], replicas=replicas)


@pytest.mark.parametrize("override,message", [
    (("sweep.batch_size", "64,128"), r"^config\.sweep\.batch_size: 'batch_size' cannot be swept in one program"),
    (("sweep.model.hparams.num_experts", "2,4"), r"^config\.sweep\.model\.hparams\.num_experts: .* cannot be swept"),
    (("sweep.balancer.hparams.num_iters", "5,10"),
     r"^config\.sweep\.balancer\.hparams\.num_iters: balancer 'cagrad'\'s 'num_iters' is not a float"),
    (("sweep.learning_rat", "1e-3"), r"^config\.sweep\.learning_rat: unknown key 'learning_rat' .*did you mean "
                                     r"'learning_rate'"),
    (("sweep.balancer.hparams.cc", "1"), r"^config\.sweep\.balancer\.hparams\.cc: unknown key 'cc' in "
                                         r"balancer\.hparams; did you mean 'c'"),
    (("sweep.learning_rate", "fast,slow"), r"^--config\.sweep\.learning_rate=fast,slow: expected comma-separated "
                                           "numbers"),
    (("sweep.learning_rate", "-1e-3,1e-3"), r"^config\.learning_rate=-0\.001: must be > 0"),
])
def test_sweep_keys_that_cannot_be_swept_are_refused(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        validate(resolve(get_config("smoke"), [("balancer.name", "cagrad"), ("model.name", "mmoe"), override]))
    assert "\n" not in str(e.value)


def test_points_are_the_cartesian_product_in_key_order():
    config = resolve(get_config("smoke"), [("balancer.name", "cagrad"), ("sweep.learning_rate", "1e-3,1e-2"),
                                           ("sweep.balancer.hparams.c", "0.2,0.4,0.6")])
    validate(config)
    assert sweep_points(config) == [{"balancer.hparams.c": c, "learning_rate": lr}
                                    for c in (0.2, 0.4, 0.6) for lr in (1e-3, 1e-2)]


def test_split_points_fits_whole_points_in_the_limit():
    # 2 seeds of 100 bytes: a point is 200 bytes, 450 bytes hold 2 points
    assert split_points(5, 2, 100, 450) == [range(0, 2), range(2, 4), range(4, 5)]
    assert split_points(3, 2, 100, 10) == [range(0, 1), range(1, 2), range(2, 3)]  # a point alone that does not fit
    assert split_points(3, 1, 100, 10**9) == [range(0, 3)]


def _sweep_config(gammas="1e-3,0.5", **extra):
    overrides = [("balancer.name", "famo"), ("model.name", "shared_bottom"), ("data.num_train", "600"),
                 ("epochs", "2"), ("batch_size", "100"), ("tensorboard", "false"), ("seeds", "2"),
                 ("sweep.learning_rate", "1e-3,1e-2"), ("sweep.balancer.hparams.gamma", gammas)]
    config = resolve(get_config("smoke"), overrides + [(k, str(v)) for k, v in extra.items()])
    validate(config)
    return config


def test_sweep_writes_one_run_directory_per_point_and_resumes(tmp_path):
    summary = train_and_evaluate(_sweep_config(), tmp_path, progress=False, resolved=True)
    names = [point_name({"balancer.hparams.gamma": g, "learning_rate": lr}) for g in (1e-3, 0.5) for lr in (1e-3, 1e-2)]
    assert list(summary["points"]) == names and set(summary["points"].values()) == {"finished"}
    assert json.loads((tmp_path / "summary.json").read_text())["points"] == summary["points"]
    for name in names:
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert point_name({"balancer.hparams.gamma": config["balancer"]["hparams"]["gamma"],
                           "learning_rate": config["learning_rate"]}) == name and "sweep" not in config
        assert run_status(tmp_path / name).finished
        statuses = seed_statuses(tmp_path / name)
        assert sorted(statuses) == [0, 1] and all(s.finished for s in statuses.values())
    written = {n: (tmp_path / n / "summary.json").stat().st_mtime_ns for n in names}
    again = train_and_evaluate(_sweep_config(), tmp_path, progress=False, resolved=True)
    assert again["points"] == summary["points"] and "programs" not in again  # nothing left to train
    assert {n: (tmp_path / n / "summary.json").stat().st_mtime_ns for n in names} == written


def test_a_grown_sweep_trains_only_its_new_points_and_another_change_is_refused(tmp_path):
    first = train_and_evaluate(_sweep_config("0.5"), tmp_path, progress=False, resolved=True)
    written = {n: (tmp_path / n / "summary.json").stat().st_mtime_ns for n in first["points"]}
    grown = train_and_evaluate(_sweep_config("1e-3,0.5"), tmp_path, progress=False, resolved=True)
    assert len(grown["points"]) == 4 and set(grown["points"].values()) == {"finished"}
    assert grown["programs"] == 1  # the two new points, side by side
    assert {n: (tmp_path / n / "summary.json").stat().st_mtime_ns for n in first["points"]} == written
    assert json.loads((tmp_path / "config.json").read_text())["sweep"]["balancer"]["hparams"]["gamma"] == [1e-3, 0.5]
    with pytest.raises(ConfigError, match="holds a run of a different config"):
        train_and_evaluate(_sweep_config("1e-3,0.5", epochs=3), tmp_path, progress=False, resolved=True)


def test_points_split_into_several_programs_give_the_one_program_results(tmp_path):
    one = train_and_evaluate(_sweep_config("0.5"), tmp_path / "one", progress=False, resolved=True)
    split = train_and_evaluate(_sweep_config("0.5", sweep_memory_mb=1e-6), tmp_path / "split", progress=False,
                               resolved=True)
    assert one["programs"] == 1 and split["programs"] == 2  # the tiny limit puts each point in its own program
    # the sweep's compile time: its one program's, or the sum of the two programs' (as each first point says)
    first = json.loads((tmp_path / "one" / next(iter(one["points"])) / "summary.json").read_text())
    assert one["compile_seconds"] == pytest.approx(first["compile_seconds"]) and first["compile_seconds"] > 0
    assert split["compile_seconds"] == pytest.approx(sum(
        json.loads((tmp_path / "split" / n / "summary.json").read_text())["compile_seconds"] for n in split["points"]))
    for name in one["points"]:
        a = json.loads((tmp_path / "one" / name / "summary.json").read_text())
        b = json.loads((tmp_path / "split" / name / "summary.json").read_text())
        for split_name in ("validation_mean", "test_mean"):
            for task, metrics in a[split_name].items():
                for m, x in metrics.items():
                    assert b[split_name][task][m] == pytest.approx(x, rel=REL, abs=1e-6), (name, task, m)
