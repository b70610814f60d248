"""The MMoE paper's synthetic two-task regression data with controlled correlation.

Ma et al. (KDD 2018), Sec. 3.2. With ``u_1, u_2`` orthonormal in ``R^d``:

    w_1 = c u_1,          w_2 = c (rho u_1 + sqrt(1 - rho^2) u_2),
    x ~ N(0, I_d),
    y_i = w_i^T x + sum_{k=1..m} sin(alpha_k w_i^T x + beta_k) + eps_i,
    eps_i ~ N(0, noise^2).

``rho`` is the cosine of the two tasks' linear weight vectors; the paper shows the
Pearson correlation of the labels falls monotonically with it.

The paper does not publish ``alpha, beta``; as in the Google Research reference implementation,
``alpha_k = k, beta_k = (k - 1)^2`` and by default ``d = 100, c = 1, m = 10, noise = 0.01``. The draw
is a pure function of ``seed``: the same seed gives the same ``u``, ``x`` and noise for every ``rho``.
"""

from __future__ import annotations

import numpy as np

from mtl.data.base import MultiTaskData, Split, TaskSpec
from mtl.data.preprocess import statistics_of


def mmoe_synthetic_arrays(num_rows: int, *, correlation: float, dim: int = 100, scale: float = 1.0,
                          num_sines: int = 10, noise: float = 0.01, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``(x (N, d), y (N, 2))`` from the MMoE generator."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must lie in [-1, 1], got {correlation}")
    if dim < 2:
        raise ValueError(f"dim must be at least 2, got {dim}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(max(0.0, 1.0 - correlation**2)) * u2)
    alphas = np.arange(1, num_sines + 1, dtype=np.float64)
    betas = (alphas - 1.0) ** 2
    x = rng.normal(size=(num_rows, dim))
    eps = rng.normal(scale=noise, size=(num_rows, 2))
    ys = []
    for i, w in enumerate((w1, w2)):
        s = x @ w
        ys.append(s + np.sin(np.outer(s, alphas) + betas).sum(axis=1) + eps[:, i])
    return x.astype(np.float32), np.stack(ys, axis=1).astype(np.float32)


def load_synthetic(*, correlation: float = 0.5, num_train: int = 10_000, num_validation: int = 1_000,
                   num_test: int = 1_000, dim: int = 100, scale: float = 1.0, num_sines: int = 10, noise: float = 0.01,
                   seed: int = 0, standardize_labels: bool = False) -> MultiTaskData:
    """The synthetic benchmark as a :class:`MultiTaskData` (two regression tasks). ``standardize_labels`` is
    off by default, as in the paper, unlike the other loaders: ``docs/data.md``, *Preprocessing rules*."""
    n = num_train + num_validation + num_test
    x, y = mmoe_synthetic_arrays(n, correlation=correlation, dim=dim, scale=scale, num_sines=num_sines, noise=noise,
                                 seed=seed)
    tasks = [TaskSpec("task1", "regression"), TaskSpec("task2", "regression")]
    info = {
        "dataset": "mmoe_synthetic",
        "protocol": f"generated: {num_train}/{num_validation}/{num_test} rows, rho={correlation}, seed={seed}",
        "correlation": correlation,
    }
    if standardize_labels:
        for t in range(2):
            mean, std = statistics_of(y[:num_train, t])
            tasks[t] = TaskSpec(tasks[t].name, "regression", label_mean=mean, label_std=std)
            y[:, t] = ((y[:, t].astype(np.float64) - mean) / std).astype(np.float32)
        info["label_standardization"] = {t.name: [t.label_mean, t.label_std] for t in tasks}
    empty = np.zeros((n, 0), np.int32)
    bounds = [0, num_train, num_train + num_validation, n]
    splits = [Split(x[a:b], empty[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return MultiTaskData(*splits, tasks=tuple(tasks), numeric_names=tuple(f"x{i}" for i in range(dim)), info=info)
