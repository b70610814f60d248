import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score, log_loss, precision_score, recall_score, roc_auc_score

from mtl import metrics


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=500)
    s = rng.integers(0, 7, size=500).astype(float)  # many ties
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    s = rng.normal(size=500)
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_by_hand():
    # positives at 0.8 and 0.4, negatives at 0.4 and 0.1: pairs (0.8>0.4),(0.8>0.1),(0.4=0.4 -> 1/2),(0.4>0.1)
    assert metrics.auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert np.isnan(metrics.auc([1, 1], [0.1, 0.2]))
    assert metrics.auc([0, 0, 1], [2.0, 2.0, 2.0]) == 0.5  # all tied


def test_logloss_accuracy_mse_mae():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    logits = rng.normal(size=200) * 3
    p = 1 / (1 + np.exp(-logits))
    assert metrics.logloss(y, logits) == pytest.approx(log_loss(y, p), rel=1e-9)
    assert metrics.accuracy(y, logits) == pytest.approx(np.mean((p > 0.5) == y))
    assert metrics.mse([1.0, 2.0], [2.0, 4.0]) == pytest.approx(2.5)
    assert metrics.mae([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.5)  # (|1| + |2|) / 2
    assert metrics.mae([0.0, 0.0, 0.0], [-3.0, 1.0, 2.0]) == pytest.approx(2.0)
    assert set(metrics.task_metrics(y, logits, "binary")) == {
        "auc", "logloss", "accuracy", "precision", "recall", "f1", "threshold"}
    assert set(metrics.task_metrics(y, logits, "regression")) == {"mse", "mae"}
    with pytest.raises(ValueError, match="unknown task kind"):
        metrics.task_metrics(y, logits, "ranking")


def test_logloss_is_exact_far_from_zero_without_clipping():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # -log(sigmoid(-30)) = 30 + log1p(exp(-30)) = 30 + 9.4e-14:
        # a clipped probability (1e-7 or 1e-15) gives 16 or 34.5
        assert metrics.logloss([1], [-30.0]) == pytest.approx(30.0, rel=1e-14)
        assert metrics.logloss([0], [30.0]) == pytest.approx(30.0, rel=1e-14)
        assert metrics.logloss([1, 0], [-1000.0, 1000.0]) == 1000.0
        assert metrics.logloss([1], [np.float32(-30.0)]) == pytest.approx(30.0, rel=1e-14)
        assert metrics.logloss([1], [40.0]) == pytest.approx(np.exp(-40.0), rel=1e-12)


# ---- GAUC -------------------------------------------------------------------------------------------------------

# Rows interleaved across users; user ids arbitrary, not contiguous.
#   user 7:  labels 1, 0, 0 at scores 0.9, 0.3, 0.9 -> pos beats 0.3 (1), ties 0.9 (1/2): AUC 1.5 / 2 = 0.75, 3 rows
#   user 3:  labels 1, 0    at scores 0.2, 0.5      -> AUC 0, 2 rows
#   user 42: labels 1, 1    (one class: skipped, although its 0.9 ties user 7's scores)
#   user 5:  label 0        (one class: skipped)
GAUC_USERS = np.array([7, 3, 42, 7, 5, 3, 42, 7])
GAUC_LABELS = np.array([1, 1, 1, 0, 0, 0, 1, 0])
GAUC_SCORES = np.array([0.9, 0.2, 0.9, 0.3, 0.1, 0.5, 0.0, 0.9])


def test_gauc_by_hand_ties_and_one_class_users_skipped():
    assert metrics.gauc(GAUC_LABELS, GAUC_SCORES, GAUC_USERS) == pytest.approx((3 * 0.75 + 2 * 0.0) / 5)


def test_gauc_weights_users_by_impressions():
    # user 7's rows twice: its AUC is still 0.75 but it now weighs 6 rows against user 3's 2
    keep = GAUC_USERS == 7
    u = np.concatenate([GAUC_USERS, GAUC_USERS[keep]])
    y = np.concatenate([GAUC_LABELS, GAUC_LABELS[keep]])
    s = np.concatenate([GAUC_SCORES, GAUC_SCORES[keep]])
    assert metrics.auc(y[u == 7], s[u == 7]) == pytest.approx(0.75)
    assert metrics.gauc(y, s, u) == pytest.approx((6 * 0.75 + 2 * 0.0) / 8)  # unweighted mean would be 0.375


def test_gauc_nan_without_a_two_class_user_and_matches_a_loop():
    assert np.isnan(metrics.gauc([1, 0, 1], [0.1, 0.2, 0.3], [1, 2, 3]))
    assert np.isnan(metrics.gauc([], [], []))
    rng = np.random.default_rng(1)
    n = 3000
    users = rng.integers(0, 200, size=n) * 13 - 50  # negative ids too
    y = rng.random(n) < 0.3
    s = rng.integers(0, 5, size=n).astype(np.float32)  # heavy ties
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if 0 < y[m].sum() < m.sum():
            num += m.sum() * metrics.auc(y[m], s[m])  # checked against sklearn above
            den += m.sum()
    assert metrics.gauc(y, s, users) == pytest.approx(num / den, abs=1e-12)
    # a single user: GAUC is AUC
    assert metrics.gauc(y, s, np.zeros(n, int)) == pytest.approx(metrics.auc(y, s), abs=1e-12)


# ---- F1-optimal threshold, precision, recall ---------------------------------------------------------------------


def test_best_f1_threshold_by_hand():
    # logits 4 3 2 2 1 0 with labels 1 1 0 0 1 0 (P = 3); F1(t) = 2 TP / (PP + P):
    # t=4: 2/4, t=3: 4/5, t=2: 4/7 (both 2s predicted positive), t=1: 6/8, t=0: 6/9 -> t = 3
    y, x = [1, 1, 0, 0, 1, 0], [4.0, 3.0, 2.0, 2.0, 1.0, 0.0]
    assert metrics.best_f1_threshold(y, x) == 3.0
    assert metrics.precision_recall_f1(y, x, 3.0) == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8})


def test_best_f1_threshold_ties():
    # equal maximal F1 at t=3 (TP 1, PP 1: 2/3) and t=0 (TP 2, PP 4: 4/6): the highest threshold wins
    assert metrics.best_f1_threshold([1, 0, 0, 1], [3.0, 2.0, 1.0, 0.0]) == 3.0
    # tied scores are all on the same side of the threshold (logit >= t is positive)
    y, x = [1, 0, 1], [1.0, 1.0, 0.0]
    assert metrics.precision_recall_f1(y, x, 1.0) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert metrics.best_f1_threshold(y, x) == 0.0  # t=1: 2/4, t=0: 4/5
    assert metrics.best_f1_threshold([1, 1], [0.5, -2.0]) == -2.0  # all positive: predict all, F1 = 1


def test_precision_recall_f1_zero_division():
    # nothing predicted positive: precision 0 (sklearn's zero_division=0), recall 0, F1 0
    assert metrics.precision_recall_f1([1, 0], [0.0, 0.0], 5.0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # no positive label: recall undefined; F1 = 0 when something is predicted positive, NaN when nothing is
    r = metrics.precision_recall_f1([0, 0], [1.0, -1.0], 0.0)
    assert r["precision"] == 0.0 and np.isnan(r["recall"]) and r["f1"] == 0.0
    r = metrics.precision_recall_f1([0, 0], [1.0, -1.0], 5.0)
    assert r["precision"] == 0.0 and np.isnan(r["recall"]) and np.isnan(r["f1"])
    # no positive label: no F1-optimal threshold, and a NaN threshold gives NaN metrics
    assert np.isnan(metrics.best_f1_threshold([0, 0], [1.0, 2.0]))
    assert all(np.isnan(v) for v in metrics.precision_recall_f1([1, 0], [1.0, 2.0], float("nan")).values())


@pytest.mark.parametrize("seed", range(4))
def test_precision_recall_f1_and_best_threshold_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=400)
    x = np.round(rng.normal(size=400) + y, 1)  # ~60 distinct values, ties
    t = metrics.best_f1_threshold(y, x)
    candidates = np.unique(x)
    pred = x[None, :] >= candidates[:, None]
    tp = (pred & (y[None, :] == 1)).sum(1)
    f1s = 2 * tp / (pred.sum(1) + y.sum())  # brute force over every candidate
    assert metrics.precision_recall_f1(y, x, t)["f1"] == pytest.approx(f1s.max(), abs=1e-12)
    assert t == candidates[np.flatnonzero(f1s >= f1s.max() - 1e-12)].max()
    assert f1s.max() == pytest.approx(f1_score(y, x >= t), abs=1e-12)
    for c in (t, 0.0, candidates[5], candidates[-3]):
        pred = x >= c
        r = metrics.precision_recall_f1(y, x, c)
        assert r["precision"] == pytest.approx(precision_score(y, pred, zero_division=0), abs=1e-12)
        assert r["recall"] == pytest.approx(recall_score(y, pred), abs=1e-12)
        assert r["f1"] == pytest.approx(f1_score(y, pred), abs=1e-12)


# ---- evaluate ---------------------------------------------------------------------------------------------------


def _two_task_split(seed, n=600):
    rng = np.random.default_rng(seed)
    click = rng.random(n) < 0.4
    conv = click & (rng.random(n) < 0.3)
    labels = np.stack([click, conv, rng.normal(size=n)], 1).astype(np.float32)
    outputs = np.stack([click + rng.normal(size=n), conv + rng.normal(size=n), labels[:, 2] + 0.5 * rng.normal(size=n)],
                       1).astype(np.float32)
    return labels, outputs


NAMES, KINDS = ["click", "conversion", "time"], ["binary", "binary", "regression"]


def test_evaluate_backward_compatible_call():
    labels, outputs = _two_task_split(0)
    r = metrics.evaluate(labels, outputs, NAMES, KINDS)
    assert set(r) == set(NAMES)
    assert set(r["click"]) == {"auc", "logloss", "accuracy", "precision", "recall", "f1", "threshold"}
    assert set(r["time"]) == {"mse", "mae"}
    assert r["click"]["auc"] == metrics.auc(labels[:, 0], outputs[:, 0])
    assert r["time"]["mae"] == pytest.approx(np.mean(np.abs(labels[:, 2] - outputs[:, 2].astype(np.float64))))
    assert r["click"]["threshold"] == metrics.best_f1_threshold(labels[:, 0], outputs[:, 0])


def test_evaluate_applies_validation_thresholds_unchanged_to_test():
    val_l, val_o = _two_task_split(1)
    test_l, test_o = _two_task_split(2)
    val = metrics.evaluate(val_l, val_o, NAMES, KINDS)
    thresholds = {t: val[t]["threshold"] for t, k in zip(NAMES, KINDS) if k == "binary"}
    test = metrics.evaluate(test_l, test_o, NAMES, KINDS, thresholds=thresholds)
    for i, t in enumerate(NAMES[:2]):
        assert test[t]["threshold"] == thresholds[t]
        expect = metrics.precision_recall_f1(test_l[:, i], test_o[:, i], thresholds[t])
        assert {k: test[t][k] for k in expect} == expect
    # the test split's own optimum differs, so the threshold was not re-fitted on test
    assert metrics.best_f1_threshold(test_l[:, 0], test_o[:, 0]) != thresholds["click"]
    with pytest.raises(ValueError, match="no entry for binary task 'conversion'"):
        metrics.evaluate(test_l, test_o, NAMES, KINDS, thresholds={"click": 0.0})


def test_evaluate_masks_and_users():
    labels, outputs = _two_task_split(3)
    clicked = labels[:, 0] > 0.5
    users = np.arange(len(labels)) % 37
    r = metrics.evaluate(labels, outputs, NAMES, KINDS, masks={"conversion": clicked}, users=users)
    assert r["conversion"]["auc"] == metrics.auc(labels[clicked, 1], outputs[clicked, 1])
    assert r["conversion"]["gauc"] == metrics.gauc(labels[clicked, 1], outputs[clicked, 1], users[clicked])
    assert r["click"]["auc"] == metrics.auc(labels[:, 0], outputs[:, 0])  # unmasked task: every row
    assert r["click"]["gauc"] == metrics.gauc(labels[:, 0], outputs[:, 0], users)
    assert "gauc" not in r["time"]
    # a mask that leaves one class (or no rows): NaN, no exception, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = {"conversion": ~clicked, "time": np.zeros(len(labels), bool)}
        r = metrics.evaluate(labels, outputs, NAMES, KINDS, masks=masks)
    assert np.isnan(r["conversion"]["auc"]) and np.isnan(r["conversion"]["threshold"])
    assert np.isfinite(r["conversion"]["logloss"])
    assert np.isnan(r["time"]["mse"]) and np.isnan(r["time"]["mae"])
    with pytest.raises(ValueError, match="unknown tasks"):
        metrics.evaluate(labels, outputs, NAMES, KINDS, masks={"purchase": clicked})
