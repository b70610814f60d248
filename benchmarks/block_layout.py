"""The three ways the loaders touch the row-major float32 block of numeric columns, timed side by side.

    python -m benchmarks.block_layout                  # 2M rows x 63 columns, 1.44M training rows, 3 rounds

On synthetic arrays of the AliExpress Parquet copy's shapes (``benchmarks.data_loading``), each pair
alternating round by round, the best of the rounds printed with its ratio:

- ``write``: writing 63 float64 columns into fresh ``np.empty`` pages column by column, against the
  same after the rows were first written with zeros in order (``mtl.data.reader._read`` does that);
- ``gather``: the training rows of each column gathered one column at a time (``x[idx]``), against
  :func:`mtl.data.preprocess._train_values` (whole rows, a quarter of the columns per pass);
- ``encode``: the training rows scaled 16,384 at a time, the rows and columns picked as
  ``build_multitask_data``'s ``encode`` did (``block[rows][:, index array]``) against as it does
  now (``np.take(block, rows, axis=0)[:, slice]``).
"""

from __future__ import annotations

import time

import numpy as np
from absl import app, flags

from mtl.data.frame import Frame
from mtl.data.preprocess import _train_values

FLAGS = flags.FLAGS
flags.DEFINE_integer("block_rows", 2_000_000, "Rows of the block.")
flags.DEFINE_integer("block_columns", 63, "Numeric columns (AliExpress has 63).")
flags.DEFINE_integer("block_rounds", 3, "Alternating rounds of each pair.")


def _write(x: np.ndarray, columns: int, touch: bool) -> None:
    block = np.empty((len(x), columns), np.float32)
    if touch:
        block[:] = 0
    for j in range(columns):
        block[:, j] = x


def _gather(frame: Frame, idx: np.ndarray, whole_rows: bool) -> None:
    if whole_rows:
        for _ in _train_values(frame, list(frame.block_columns), idx):
            pass
    else:
        for name in frame.block_columns:
            frame.numeric[name][idx]


def _encode(block: np.ndarray, idx: np.ndarray, sliced: bool, mean: np.ndarray, std: np.ndarray) -> None:
    out, columns = np.empty((16384, block.shape[1]), np.float32), slice(0, block.shape[1])
    for a in range(0, len(idx), 16384):
        rows = idx[a : a + 16384]
        if sliced:  # what encode does now
            v = np.take(block, rows, axis=0)[:, columns].astype(np.float64)
        else:  # what it did: fancy rows, then an index array of columns
            columns = np.arange(block.shape[1])
            v = block[rows][:, columns].astype(np.float64)
        v -= mean
        v /= std
        np.copyto(v, 0.0, where=np.isnan(v))
        out[: len(rows), columns] = v


def main(argv):
    del argv
    n, k = FLAGS.block_rows, FLAGS.block_columns
    rng = np.random.default_rng(0)
    block = rng.normal(size=(n, k)).astype(np.float32)
    block[::7, 3] = np.nan
    names = tuple(f"x{j}" for j in range(k))
    frame = Frame({}, {}, ["synthetic"], np.zeros(n, np.int16), np.arange(1, n + 1), block, names)
    idx = rng.permutation(n)[: int(0.72 * n)]  # the share of rows the AliExpress copy trains on
    mean, std = np.zeros(k), np.ones(k)
    pairs = {
        "write": (lambda: _write(block[: n * 7 // 20, 0].astype(np.float64), k, False),
                  lambda: _write(block[: n * 7 // 20, 0].astype(np.float64), k, True)),
        "gather": (lambda: _gather(frame, idx, False), lambda: _gather(frame, idx, True)),
        "encode": (lambda: _encode(block, idx, False, mean, std), lambda: _encode(block, idx, True, mean, std)),
    }  # fmt: skip
    labels = {"write": ("fresh pages", "touched first"), "gather": ("per column", "whole rows"),
              "encode": ("index array", "slice")}  # fmt: skip
    print(f"{n:,} x {k} float32 block, {len(idx):,} training rows; best of {FLAGS.block_rounds} alternating rounds")
    print(f"{'pair':8s} {'before':>14s} {'s':>7s} {'after':>14s} {'s':>7s} {'ratio':>6s}")
    for name, (old, new) in pairs.items():
        best = [np.inf, np.inf]
        for _ in range(FLAGS.block_rounds):
            for i, fn in enumerate((old, new)):
                t = time.perf_counter()
                fn()
                best[i] = min(best[i], time.perf_counter() - t)
        print(f"{name:8s} {labels[name][0]:>14s} {best[0]:7.3f} {labels[name][1]:>14s} {best[1]:7.3f} "
              f"{best[0] / best[1]:6.2f}")


if __name__ == "__main__":
    app.run(main)
