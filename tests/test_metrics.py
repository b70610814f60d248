import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

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


def test_logloss_accuracy_mse():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    logits = rng.normal(size=200) * 3
    p = 1 / (1 + np.exp(-logits))
    assert metrics.logloss(y, logits) == pytest.approx(log_loss(y, p), rel=1e-9)
    assert metrics.accuracy(y, logits) == pytest.approx(np.mean((p > 0.5) == y))
    assert metrics.mse([1.0, 2.0], [2.0, 4.0]) == pytest.approx(2.5)
    assert set(metrics.task_metrics(y, logits, "binary")) == {"auc", "logloss", "accuracy"}
    with pytest.raises(ValueError, match="unknown task kind"):
        metrics.task_metrics(y, logits, "ranking")
