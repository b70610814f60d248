"""The gradient-boosted-tree baseline (mtl.bench.gbdt, experiments/gbdt_baseline.py) on small made-up data."""

import csv
import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from experiments import gbdt_baseline
from mtl.bench import gbdt
from mtl.cli import UsageError
from mtl.data.base import MultiTaskData, Split, TaskSpec

FAST = gbdt.Settings(learning_rate=0.1, max_iter=60, patience=10)


def _split(rng, n, labels_of):
    x = rng.normal(size=(n, 2)).astype(np.float32)
    cat = np.stack([rng.integers(0, 5, n), rng.integers(0, 300, n)], axis=1)
    return Split(x, cat, labels_of(x, rng), users=rng.integers(0, 20, n))


def _data(seed=0, n=(2000, 1000, 1000)):
    """Task ``known`` = [x0 > 0.3]; task ``noise`` independent of every feature; a 5-value and a 300-value
    categorical field."""
    rng = np.random.default_rng(seed)
    labels_of = lambda x, r: np.stack([x[:, 0] > 0.3, r.random(len(x)) < 0.3], axis=1)
    train, validation, test = (_split(rng, k, labels_of) for k in n)
    return MultiTaskData(train, validation, test, (TaskSpec("known", "binary"), TaskSpec("noise", "binary")),
                         numeric_names=("x0", "x1"), categorical_names=("small", "large"), vocab_sizes=(5, 300))


def test_recovers_a_known_function_and_fits_each_task_alone():
    data = _data()
    result = {r["task"]: r for r in gbdt.fit_evaluate(data, FAST)["tasks"]}
    assert result["known"]["test"]["auc"] > 0.99
    assert result["known"]["test"]["gauc"] > 0.98  # users reach the metric
    assert abs(result["noise"]["test"]["auc"] - 0.5) < 0.1
    # the noise task's model never sees the known task's labels: permuting them changes nothing of it
    for split in data.splits().values():
        split.labels[:, 0] = np.random.default_rng(1).permutation(split.labels[:, 0])
    again = {r["task"]: r for r in gbdt.fit_evaluate(data, FAST)["tasks"]}
    assert again["noise"]["test"] == result["noise"]["test"]
    assert again["known"]["test"]["auc"] < 0.6


def test_iterations_are_the_best_validation_auc_on_the_given_validation_split():
    data = _data()
    enc = gbdt.encode(data, FAST)
    x, y = enc.features, {k: s.labels[:, 0] for k, s in data.splits().items()}
    y["validation"] = np.random.default_rng(2).permutation(y["validation"])  # a noisy validation curve
    model, iterations, curve = gbdt.fit_task(x["train"], y["train"], x["validation"], y["validation"],
                                             enc.categorical_mask, FAST)  # fmt: skip
    staged = list(model.staged_decision_function(x["validation"]))
    by_sklearn = np.array([roc_auc_score(y["validation"], s) for s in staged])
    np.testing.assert_allclose(curve, by_sklearn, rtol=1e-12)
    assert iterations == np.flatnonzero(by_sklearn == by_sklearn.max())[0] + 1
    # early stopping watched the split it was given: its last score is that split's log-loss, by hand
    p = 1 / (1 + np.exp(-staged[-1]))
    by_hand = -np.mean(y["validation"] * np.log(p) + (1 - y["validation"]) * np.log(1 - p))
    assert model.validation_score_[-1] == pytest.approx(-by_hand, rel=1e-9)
    np.testing.assert_array_equal(gbdt.logits_at(model, x["test"], iterations), list(
        model.staged_decision_function(x["test"]))[iterations - 1])


def test_encoding_native_up_to_max_bins_then_training_frequency_or_ordinal():
    rng = np.random.default_rng(0)
    codes = {"train": rng.integers(0, (255, 256), (500, 2)), "validation": rng.integers(0, (255, 256), (50, 2)),
             "test": np.array([[254, 255], [0, 0]])}  # fmt: skip
    splits = {k: Split(np.ones((len(c), 1), np.float32), c, np.zeros((len(c), 1))) for k, c in codes.items()}
    splits["train"].categorical[:, 1] = np.minimum(splits["train"].categorical[:, 1], 254)  # 255 never in train
    data = MultiTaskData(**splits, tasks=(TaskSpec("y", "binary"),), numeric_names=("n",),
                         categorical_names=("a255", "b256"), vocab_sizes=(255, 256))  # fmt: skip
    enc = gbdt.encode(data, gbdt.Settings())
    assert enc.columns == (("a255", "native categorical"), ("b256", "training frequency"), ("n", "numeric"))
    np.testing.assert_array_equal(enc.categorical_mask, [True, False, False])
    train_b = list(data.train.categorical[:, 1])
    for k, split in data.splits().items():
        np.testing.assert_array_equal(enc.features[k][:, 0], split.categorical[:, 0])
        np.testing.assert_array_equal(enc.features[k][:, 1], [train_b.count(v) for v in split.categorical[:, 1]])
        np.testing.assert_array_equal(enc.features[k][:, 2], 1.0)
    assert enc.features["test"][0, 1] == 0  # an id unseen in training
    ordinal = gbdt.encode(data, gbdt.Settings(high_cardinality="ordinal"))
    assert ordinal.columns[1] == ("b256", "ordinal code")
    np.testing.assert_array_equal(ordinal.features["test"][:, 1], [255, 0])


GROUPS = {"1": {"tasks": [
    {"task": "income", "iterations": 136, "fitted_iterations": 195, "seconds": 19.375,
     "validation": {"auc": 0.95038978}, "test": {"auc": 0.94946781, "logloss": 0.11601379}},
    {"task": "never_married", "iterations": 7, "fitted_iterations": 57, "seconds": 0.04,
     "validation": {"auc": 0.5}, "test": {"auc": 0.99489483, "gauc": 0.71234567, "logloss": 0.08983869}}]}}


def test_table_writer():
    md = gbdt.render_markdown("T", ["Seed: 0", "Commit: abc"], GROUPS)
    assert md.splitlines() == [
        "# T", "", "- Seed: 0", "- Commit: abc", "",
        "| task group | task | iterations | fitted | validation auc | test auc | test gauc | test logloss | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        "| 1 | income | 136 | 195 | 0.9504 | 0.9495 | — | 0.1160 | 19.4 |",
        "| 1 | never_married | 7 | 57 | 0.5000 | 0.9949 | 0.7123 | 0.0898 | 0.0 |",
    ]
    rows = list(csv.DictReader(io.StringIO(gbdt.render_csv(GROUPS, {"seed": 0, "commit": "abc"}))))
    assert [r["task"] for r in rows] == ["income", "never_married"]
    assert float(rows[0]["test auc"]) == 0.94946781 and np.isnan(float(rows[0]["test gauc"]))
    assert float(rows[1]["test gauc"]) == 0.71234567 and rows[1]["iterations"] == "7"
    assert rows[1]["commit"] == "abc" and rows[1]["seed"] == "0"


@pytest.mark.parametrize("argv, message", [
    (["--dataset=movielens"], "--dataset=movielens: choose one of kuairand_pure, census_income"),
    (["--dataset=census_income", "--max_iter=1e3"], "--max_iter=1e3: expected int"),
    (["--dataset=census_income", "--high_cardinality=hash"], "--high_cardinality: high_cardinality must be one of"),
])  # fmt: skip
def test_bad_flags_are_one_line_errors(argv, message, tmp_path):
    with pytest.raises(UsageError, match=message.replace(".", r"\.").replace("+", r"\+")):
        gbdt_baseline.main([*argv, f"--outdir={tmp_path}"])


def test_command_writes_the_table(data_dir, tmp_path):
    argv = ["--dataset=census_income", f"--data_dir={data_dir}", "--task_groups=2", "--max_iter=3", "--patience=1",
            f"--outdir={tmp_path}"]  # fmt: skip
    path = gbdt_baseline.main(argv)
    md = path.read_text()
    assert "- Rows: train 49,881, validation 24,940, test 24,941" in md
    assert "max_iter 3" in md and "patience 1" in md
    assert "- Command: python -m experiments.gbdt_baseline " + " ".join(argv) in md
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [(r["task group"], r["task"]) for r in rows] == [("2", "college"), ("2", "never_married")]
    assert all(0.5 < float(r["test auc"]) <= 1 and int(r["fitted"]) <= 3 for r in rows)
