"""Evaluation metrics on host numpy arrays.

Binary tasks: exact ROC AUC (ties get the average rank, i.e. the
Mann-Whitney U statistic), log loss and accuracy at 0.5 on sigmoid
probabilities. Regression tasks: mean squared error.
"""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact area under the ROC curve with ties handled (average ranks).

    Returns NaN when only one class is present.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # average rank (1-based) of each run of tied scores
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg_rank = first + (counts + 1) / 2.0
    ranks = np.repeat(avg_rank, counts)
    pos_rank_sum = ranks[labels[order]].sum()
    u = pos_rank_sum - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy computed stably from logits."""
    y = np.asarray(labels, np.float64).ravel()
    x = np.asarray(logits, np.float64).ravel()
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    y = np.asarray(labels).ravel() > 0.5
    return float(np.mean((np.asarray(logits).ravel() > 0) == y))


def mse(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.square(np.asarray(predictions, np.float64).ravel() - np.asarray(labels, np.float64).ravel())))


def task_metrics(labels: np.ndarray, outputs: np.ndarray, kind: str) -> dict[str, float]:
    """All metrics of one task: ``{"auc", "logloss", "accuracy"}`` or ``{"mse"}``."""
    if kind == "binary":
        return {"auc": auc(labels, outputs), "logloss": logloss(labels, outputs), "accuracy": accuracy(labels, outputs)}
    if kind == "regression":
        return {"mse": mse(labels, outputs)}
    raise ValueError(f"unknown task kind {kind!r}")


def evaluate(labels: np.ndarray, outputs: np.ndarray, task_names, task_kinds) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for ``labels, outputs`` of shape ``(N, T)``."""
    return {
        name: task_metrics(labels[:, i], outputs[:, i], kind)
        for i, (name, kind) in enumerate(zip(task_names, task_kinds))
    }
