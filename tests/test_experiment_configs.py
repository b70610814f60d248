"""Every experiment config runs end to end through the command-line edge (smoke sizes)."""

import importlib
import json

import numpy as np
import pytest

from mtl.train.run import train_and_evaluate


def _config(name, arg):
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


@pytest.mark.parametrize("name,arg,tasks", [
    ("census_income", "group2,ple,smoke", {"college", "never_married"}),
    ("census_income", "shared_bottom,smoke", {"income", "never_married"}),
    ("aliexpress", "smoke", {"click", "conversion"}),
    ("ali_ccp", "smoke", {"click", "conversion"}),
    ("kuairand_pure", "watch,smoke", {"is_click", "long_view", "play_time_s"}),
])
def test_dataset_configs_smoke(data_dir, tmp_path, name, arg, tasks):
    c = _config(name, arg)
    c.data.data_dir = str(data_dir)
    if "cache_dir" in c.data:
        c.data.cache_dir = str(tmp_path / "cache")
    s = train_and_evaluate(c, tmp_path / "run", progress=False)
    assert set(s["test"]) == tasks
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["protocol"] and summary["dataset"] == c.data.name
    if "play_time_s" in tasks:  # reported in seconds (mean absolute error ~20 s), not in log1p units (~1)
        assert s["test"]["play_time_s"]["mae"] > 5


def test_tabular_config_on_a_file_it_was_not_written_for(data_dir, tmp_path):
    c = _config("tabular", "smoke")
    c.data.path = str(data_dir / "kuairand_sample" / "kuairand_sample.csv")
    c.data.label_columns = "is_click,play_time_ms"
    c.data.regression_columns = "play_time_ms"
    c.data.drop_columns = "user_id,video_id"
    c.data.split = "0.6,0.2,0.2"
    c.data.cache_dir = str(tmp_path / "cache")
    c.balancer.name = "nash_mtl"
    s = train_and_evaluate(c, tmp_path / "run", progress=False)
    assert {"auc", "logloss", "accuracy", "precision", "recall", "f1", "threshold"} <= set(s["test"]["is_click"])
    assert {"mse", "mae"} == set(s["test"]["play_time_ms"])


def test_census_config_rejects_unknown_arguments():
    with pytest.raises(ValueError, match="unknown config argument 'group3'.*shared_bottom"):
        _config("census_income", "group3")


@pytest.mark.parametrize("name,arg,balancer", [
    ("ali_ccp", "smoke,esmm", "ew"), ("aliexpress", "smoke,esmm", "pcgrad"),
    ("ali_ccp", "smoke,aitm", "pcgrad"), ("aliexpress", "smoke,aitm", "ew"),
])
def test_funnel_models_train_on_the_samples(data_dir, tmp_path, name, arg, balancer):
    """ESMM and AITM from their configs on the public samples (format checks, not results)."""
    from mtl.config import resolve

    c = _config(name, arg)
    c.data.data_dir = str(data_dir)
    c.data.cache_dir = str(tmp_path / "cache")
    c.balancer.name = balancer
    c.data.allow_single_class = True
    s = train_and_evaluate(resolve(c), tmp_path / "run", progress=False)
    model = arg.split(",")[1]
    heads = {"esmm": {"click", "conversion", "ctcvr"}, "aitm": {"click", "conversion"}}[model]
    assert set(s["test"]) == heads and s["loss_names"] == (["click", "ctcvr"] if model == "esmm" else
                                                          ["click", "conversion"])
    assert all(np.isfinite(r["train_loss"][n]) for r in s["history"] for n in s["loss_names"])
