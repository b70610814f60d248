"""mtl.metrics.gauc against a by-hand example and scikit-learn, per user."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mtl import metrics

# user 2: positives {0.5, 0.6}, negatives {0.1, 0.5}: pairs 1 + 1/2 + 1 + 1 -> AUC 3.5/4, 4 rows
# user 3: positives {0.8, 0.6}, negative {0.6}: pairs 1 + 1/2 -> AUC 1.5/2, 3 rows; its two 0.6 tie
#   with user 2's 0.6 (adjacent after sorting by user and score): only ties within a user count
# user 9: positives only; user 5: one negative row: both skipped (AUC undefined)
USERS = np.array([2, 3, 9, 2, 3, 5, 2, 3, 2, 9])
SCORES = np.array([0.5, 0.6, 0.2, 0.1, 0.8, 0.4, 0.6, 0.6, 0.5, 0.9])
LABELS = np.array([1, 0, 1, 0, 1, 0, 1, 1, 0, 1])
GAUC = (4 * 3.5 / 4 + 3 * 1.5 / 2) / (4 + 3)


def test_gauc_by_hand():
    assert metrics.gauc(LABELS, SCORES, USERS) == pytest.approx(GAUC, abs=1e-12)


def test_gauc_matches_sklearn_per_user_weighted_by_impressions():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 600)
    scores = np.round(rng.normal(size=600), 1)  # many ties, within and across users
    labels = (rng.random(600) < 0.3).astype(int)
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if 0 < labels[m].sum() < m.sum():
            num += m.sum() * roc_auc_score(labels[m], scores[m])
            den += m.sum()
    assert metrics.gauc(labels, scores, users) == pytest.approx(num / den, abs=1e-12)
    out = metrics.evaluate(labels[:, None], scores[:, None], ["click"], ["binary"], users=users)
    assert out["click"]["gauc"] == pytest.approx(num / den, abs=1e-12)


def test_gauc_is_nan_without_a_user_with_both_classes():
    assert np.isnan(metrics.gauc([1, 0, 1], [0.3, 0.2, 0.1], [1, 2, 3]))
