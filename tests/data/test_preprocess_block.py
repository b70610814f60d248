"""Preprocessing a frame whose numbers sit in a row-major block: the statistics and the scaled
columns against a hand computation, whatever the block's column order and group size."""

from __future__ import annotations

import numpy as np
import pytest

from mtl.data import preprocess
from mtl.data.base import TaskSpec
from mtl.data.cache import PackWriter
from mtl.data.frame import Factor, Frame


def _frame(n: int = 257):
    rng = np.random.default_rng(0)
    block = rng.normal(3.0, 2.0, (n, 4)).astype(np.float32)
    block[::5, 1] = np.nan
    loose = rng.normal(-1.0, 0.5, n).astype(np.float32)  # a numeric column outside the block
    codes = rng.integers(0, 3, n).astype(np.int32)
    frame = Frame({"c": Factor(codes, np.array(["a", "b", "z"]))}, {"loose": loose}, ["f.csv"],
                  np.zeros(n, np.int16), np.arange(2, n + 2), block, ("b0", "b1", "b2", "b3"))
    labels = (np.arange(n) % 2).astype(np.float32)[:, None]
    return frame, labels


@pytest.mark.parametrize("groups", [1, 2, 4])  # every block column in one group, or fewer per group
def test_train_values_match_a_gather_per_column(groups):
    frame, _ = _frame()
    idx = np.random.default_rng(1).permutation(frame.num_rows)[:200]
    names = ["b2", "loose", "b0", "b1"]
    got = dict(preprocess._train_values(frame, names, idx, groups=groups, rows=7))
    assert sorted(got) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(got[name], frame.numeric[name][idx])


def test_as_slice():
    assert preprocess._as_slice(np.array([2, 3, 4])) == slice(2, 5)
    np.testing.assert_array_equal(preprocess._as_slice(np.array([0, 2])), [0, 2])
    np.testing.assert_array_equal(preprocess._as_slice(np.array([1, 0])), [1, 0])


@pytest.mark.parametrize("numeric", [["b0", "b1", "b2", "b3"], ["b3", "loose", "b1", "b0"]])
def test_scaled_columns_by_hand(tmp_path, numeric):
    frame, labels = _frame()
    perm = np.random.default_rng(2).permutation(frame.num_rows)
    splits = {"train": perm[:150], "validation": perm[150:200], "test": perm[200:]}
    pack = PackWriter(tmp_path)
    data = preprocess.build_multitask_data(frame, splits, labels=labels, tasks=[TaskSpec("y", "binary")],
                                           categorical=["c"], numeric=numeric, info={}, out=pack, block_rows=16)
    pack.close()
    for split, idx in splits.items():
        got = getattr(data, split).numeric
        for j, name in enumerate(numeric):
            column = frame.numeric[name].astype(np.float64)
            train = column[splits["train"]]
            train = train[~np.isnan(train)]
            want = (column[idx] - train.mean()) / train.std()
            np.testing.assert_allclose(got[:, j], np.where(np.isnan(want), 0.0, want).astype(np.float32), rtol=1e-6)
