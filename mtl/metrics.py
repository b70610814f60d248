"""Evaluation metrics on host numpy arrays: exact, vectorised, float64.

Binary tasks take labels in {0, 1} and **logits** (the model's raw outputs):

* ``auc``: exact ROC AUC, tied scores get their average rank (the
  Mann-Whitney U statistic), one sort;
* ``gauc``: impression-weighted mean of per-user AUC (Zhu et al., KDD 2017;
  the DIN paper's GAUC, Zhou et al., KDD 2018), users with one class skipped,
  one sort by (user, score) for all users;
* ``logloss``: mean binary cross-entropy computed stably from logits, without
  clipping (``logloss([1], [-30]) == 30 + log1p(exp(-30))``);
* ``accuracy``: at probability > 0.5, i.e. logit > 0;
* ``best_f1_threshold`` and ``precision_recall_f1``: precision, recall and F1 at
  a threshold on the logit scale, chosen to maximise F1 on validation and then
  applied unchanged to test (``evaluate(..., thresholds=...)``).

Regression tasks: ``mse`` and ``mae``.

``evaluate`` computes every metric of every task of an ``(N, T)`` label and
output array; it is what the training loop calls once per split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NAN = float("nan")


def _flat(x, dtype=np.float64) -> np.ndarray:
    return np.asarray(x, dtype).ravel()


def _binary(labels) -> np.ndarray:
    return np.asarray(labels).ravel() > 0.5


def _run_starts(sorted_keys: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean mask of the first element of each run of equal consecutive keys
    (a run ends where any of the keys changes)."""
    n = sorted_keys[0].size
    start = np.zeros(n, bool)
    if n:
        start[0] = True
        for k in sorted_keys:
            start[1:] |= k[1:] != k[:-1]
    return start


def _tie_averaged_positions(run_start: np.ndarray) -> np.ndarray:
    """0-based position in the sorted order, averaged over each run of ties:
    a run occupying positions a..b-1 gives every member (a + b - 1) / 2."""
    n = run_start.size
    first = np.flatnonzero(run_start)
    counts = np.diff(np.append(first, n))
    return np.repeat(first + (counts - 1) / 2.0, counts)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact area under the ROC curve; tied scores get the average rank.

    AUC = (R₊ − n₊(n₊+1)/2) / (n₊ n₋), with R₊ the sum of the (1-based,
    tie-averaged) ranks of the positives: a tied positive/negative pair counts 1/2.
    Returns NaN when only one class is present (or no rows).
    """
    y, s = _binary(labels), _flat(scores)
    order = np.argsort(s)
    return _auc_sorted(y[order], s[order])


def _auc_sorted(y: np.ndarray, s: np.ndarray) -> float:
    """``auc`` of rows already sorted by ascending score (any order within ties)."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    ranks = _tie_averaged_positions(_run_starts([s])) + 1.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def gauc(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> float:
    """Group AUC: the impression-weighted mean of per-user AUC.

    GAUC = Σ_u n_u AUC_u / Σ_u n_u over the users u that have both a positive
    and a negative row, n_u = the user's number of rows (impressions); users
    with one class are skipped (their AUC is undefined). Ties within a user get
    the average rank, as in ``auc``. One sort by (user, score) and per-user
    rank sums (``np.bincount``); no loop over users.

    Returns NaN when no user has both classes.
    """
    y, s = _binary(labels), _flat(scores)
    return _gauc(y, s, np.asarray(users).ravel(), np.argsort(s))


def _gauc(y: np.ndarray, s: np.ndarray, users: np.ndarray, score_order: np.ndarray) -> float:
    """``gauc`` given the ascending score order of the rows."""
    if not (y.size == s.size == users.size):
        raise ValueError(f"gauc: labels, scores and users must have the same length, got {y.size}, {s.size}, "
                         f"{users.size}")
    if y.size == 0:
        return NAN
    # sort by (user, score): a stable sort by user of the rows in score order (= np.lexsort((s, users)), faster)
    order = score_order[np.argsort(users[score_order], kind="stable")]
    u_sorted, s_sorted, y_sorted = users[order], s[order], y[order]
    user_start = _run_starts([u_sorted])
    group = np.cumsum(user_start) - 1  # 0..G-1, one per user
    group_first = np.flatnonzero(user_start)
    # rank within the user (1-based): global tie-averaged position minus the user's first position
    ranks = _tie_averaged_positions(_run_starts([u_sorted, s_sorted])) - group_first[group] + 1.0
    n = np.bincount(group).astype(np.float64)
    n_pos = np.bincount(group, weights=y_sorted.astype(np.float64))
    n_neg = n - n_pos
    pos_rank_sum = np.bincount(group, weights=np.where(y_sorted, ranks, 0.0))
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return NAN
    user_auc = (pos_rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return float(np.sum(n[ok] * user_auc) / np.sum(n[ok]))


def logloss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy from logits: max(x, 0) − x·y + log1p(exp(−|x|)).

    Exact for any logit (no clipping of probabilities): a positive at logit −30
    costs 30 + log1p(e⁻³⁰) ≈ 30. NaN with no rows.
    """
    y = _flat(labels)
    x = _flat(logits)
    if x.size == 0:
        return NAN
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def accuracy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Fraction of rows whose prediction (logit > 0, i.e. probability > 0.5) equals the label."""
    y = _binary(labels)
    if y.size == 0:
        return NAN
    return float(np.mean((_flat(logits) > 0) == y))


def mse(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean squared error (NaN with no rows)."""
    d = _flat(predictions) - _flat(labels)
    return float(np.mean(np.square(d))) if d.size else NAN


def mae(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean absolute error (NaN with no rows)."""
    d = _flat(predictions) - _flat(labels)
    return float(np.mean(np.abs(d))) if d.size else NAN


def best_f1_threshold(labels: np.ndarray, logits: np.ndarray) -> float:
    """The logit threshold that maximises F1, by exact search over the distinct scores.

    A row is predicted positive when ``logit >= threshold``. Candidate
    thresholds are the distinct logits: at candidate v every row with logit ≥ v
    (all ties of v included) is positive, so F1(v) = 2·TP(v) / (PP(v) + P), with
    PP the predicted positives and P the positives. One sort, cumulative sums.

    Ties: among candidates with the same, maximal F1 (compared exactly; the
    ratios of integers are correctly rounded) the **highest** threshold is
    returned, i.e. the fewest predicted positives.

    Returns NaN when there is no positive label (F1 is 0 or undefined at every
    threshold; ``precision_recall_f1`` then reports NaN) or no rows.
    """
    y, x = _binary(labels), _flat(logits)
    order = np.argsort(x)
    return _best_f1_threshold_sorted(y[order], x[order])


def _best_f1_threshold_sorted(y: np.ndarray, x: np.ndarray) -> float:
    """``best_f1_threshold`` of rows already sorted by ascending logit."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return NAN
    xs, ys = x[::-1], y[::-1]  # descending
    tp = np.cumsum(ys)
    # the last row of each run of ties: predicted positives through the run's end
    last = np.append(xs[1:] != xs[:-1], True)
    pp = np.flatnonzero(last) + 1
    f1 = 2.0 * tp[last] / (pp + n_pos)
    return float(xs[last][np.argmax(f1)])  # argmax: the first maximum = the highest threshold


def precision_recall_f1(labels: np.ndarray, logits: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 with ``logit >= threshold`` predicted positive.

    precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN).
    The 0/0 cases: precision is 0 when nothing is predicted positive (sklearn's
    ``zero_division=0``); recall is NaN when there is no positive label (nothing
    to recall, like AUC with one class); F1 is NaN only when there is neither a
    positive label nor a positive prediction (otherwise it is defined, possibly 0).
    A NaN threshold (``best_f1_threshold`` of labels without positives) gives
    NaN for all three.
    """
    if threshold is None or np.isnan(threshold):
        return {"precision": NAN, "recall": NAN, "f1": NAN}
    y = _binary(labels)
    pred = _flat(logits) >= threshold
    tp = int(np.count_nonzero(pred & y))
    fp = int(np.count_nonzero(pred & ~y))
    fn = int(np.count_nonzero(~pred & y))
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else NAN,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN,
    }


def task_metrics(labels: np.ndarray, outputs: np.ndarray, kind: str, *, threshold: float | None = None,
                 users: np.ndarray | None = None) -> dict[str, float]:
    """All metrics of one task.

    Binary: ``auc, logloss, accuracy, precision, recall, f1, threshold`` (and
    ``gauc`` when ``users`` is given). ``threshold=None`` chooses the F1-optimal
    threshold on these labels (``best_f1_threshold``); a given threshold is
    applied unchanged. Regression: ``mse, mae``.
    """
    if kind == "binary":
        y, x = _binary(labels), _flat(outputs)
        order = np.argsort(x)  # one sort shared by AUC, the F1 search and GAUC
        y_sorted, x_sorted = y[order], x[order]
        t = _best_f1_threshold_sorted(y_sorted, x_sorted) if threshold is None else float(threshold)
        out = {"auc": _auc_sorted(y_sorted, x_sorted), "logloss": logloss(y, x), "accuracy": accuracy(y, x),
               **precision_recall_f1(y, x, t), "threshold": t}
        if users is not None:
            out["gauc"] = _gauc(y, x, np.asarray(users).ravel(), order)
        return out
    if kind == "regression":
        return {"mse": mse(labels, outputs), "mae": mae(labels, outputs)}
    raise ValueError(f"unknown task kind {kind!r}")


def evaluate(labels: np.ndarray, outputs: np.ndarray, task_names: Sequence[str], task_kinds: Sequence[str], *,
             thresholds: Mapping[str, float] | None = None, users: np.ndarray | None = None,
             masks: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` for ``labels, outputs`` of shape ``(N, T)``.

    Args:
      labels, outputs: ``(N, T)`` arrays; outputs are logits for binary tasks
        and predictions for regression tasks.
      task_names, task_kinds: per column; kinds are ``"binary"`` or ``"regression"``.
      thresholds: ``None`` on the validation split: each binary task's
        F1-optimal logit threshold is found on these labels and reported as
        ``threshold``. On the test split pass the validation thresholds,
        ``{task: record["validation"][task]["threshold"]}``: they are applied
        unchanged. A binary task missing from the mapping is an error.
      users: optional ``(N,)`` user ids; adds ``gauc`` to every binary task.
      masks: optional ``{task: (N,) bool}`` restricting that task's rows (e.g.
        conversion on clicked impressions only); tasks not named use every row.
        A mask leaving one class gives NaN AUC/GAUC, not an error.

    Returns:
      Binary tasks: ``auc, logloss, accuracy, precision, recall, f1, threshold``
      (+ ``gauc``); regression tasks: ``mse, mae``.
    """
    labels = np.asarray(labels)
    outputs = np.asarray(outputs)
    if labels.ndim == 1:
        labels, outputs = labels[:, None], outputs[:, None]
    if labels.shape != outputs.shape or labels.shape[1] != len(task_names) or len(task_names) != len(task_kinds):
        raise ValueError(f"evaluate: labels {labels.shape}, outputs {outputs.shape}, "
                         f"{len(task_names)} task names and {len(task_kinds)} kinds do not match")
    if users is not None:
        users = np.asarray(users).ravel()
        if users.size != labels.shape[0]:
            raise ValueError(f"evaluate: users has {users.size} rows, labels {labels.shape[0]}")
    masks = dict(masks or {})
    unknown = set(masks) - set(task_names)
    if unknown:
        raise ValueError(f"evaluate: masks name unknown tasks {sorted(unknown)}; tasks are {list(task_names)}")
    result = {}
    for i, (name, kind) in enumerate(zip(task_names, task_kinds)):
        y, out, u = labels[:, i], outputs[:, i], users
        if name in masks:
            m = np.asarray(masks[name], bool).ravel()
            if m.size != labels.shape[0]:
                raise ValueError(f"evaluate: mask of task {name!r} has {m.size} rows, labels {labels.shape[0]}")
            y, out, u = y[m], out[m], (None if users is None else users[m])
        threshold = None
        if kind == "binary" and thresholds is not None:
            if name not in thresholds:
                raise ValueError(f"evaluate: thresholds has no entry for binary task {name!r} "
                                 f"(pass the validation thresholds of every binary task)")
            threshold = thresholds[name]
        result[name] = task_metrics(y, out, kind, threshold=threshold, users=u)
    return result
