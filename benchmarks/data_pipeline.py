"""Data pipeline speed on Census-Income (KDD): prepare, load, host-side batch gather.

    python -m benchmarks.data_pipeline --data_dir=../shared/data
    python -m benchmarks.data_pipeline --data_dir=../shared/data --tfds=false   # skip the TFDS build

Measures, each in a fresh temporary cache folder:

* parse (fast): ``census-income.test.gz`` (99,762 rows) into columns (what the
  first ``load`` does first);
* prepare (TFDS): ``download_and_prepare`` of the ``census_income_kdd`` builder
  (``array_record``, manual folder) plus the one batched read-back into columns;
* load: ``mtl.data.load("census_income")`` from a warm cache: the prepared
  splits, memory-mapped (best of ``--repeats``); and the same with every array
  read once (what moving them to the device costs on top);
* record reads: an ``array_record`` data source one record at a time versus
  batched ``__getitems__`` (why training never reads records one at a time);
* host gather: numpy fancy indexing of random batches of ``--batch_size`` rows
  from the columnar training arrays (:func:`host_gather_rate`; the device-side
  gather versus a train step is ``benchmarks.input_vs_step``).

Targets (issue 3, this 2-core machine): prepare < 30 s, load < 2 s.
"""

from __future__ import annotations

import pathlib
import tempfile
import time

import numpy as np
from absl import app, flags

from mtl.data import census_income as census
from mtl.data import census_income as census_format
from mtl.data import load
from mtl.data.base import Split

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder with census_income_kdd/ (or the census files); default $MTL_DATA_DIR.")
flags.DEFINE_integer("batch_size", 1024, "Rows per gathered batch.")
flags.DEFINE_integer("num_batches", 2000, "Batches gathered for the host gather rate.")
flags.DEFINE_integer("repeats", 3, "Repeats of the load measurement (best is reported).")
flags.DEFINE_bool("tfds", True, "Also time the TFDS array_record build and record reads.")

PREPARE_TARGET_S = 30.0
LOAD_TARGET_S = 2.0


def host_gather_rate(split: Split, *, batch_size: int = 1024, num_batches: int = 2000, seed: int = 0) -> dict:
    """Input side only: gathers random batches from the columnar arrays with numpy fancy indexing.

    Returns seconds per batch and rows per second; the gathered arrays are the
    ones a train step would consume (numeric, categorical, labels).
    """
    rng = np.random.default_rng(seed)
    n = len(split)
    idx = rng.integers(0, n, size=(num_batches, batch_size))
    arrays = (split.numeric, split.categorical, split.labels)
    for a in arrays:  # warm up
        a[idx[0]]
    start = time.perf_counter()
    checksum = 0.0
    for b in range(num_batches):
        rows = idx[b]
        numeric, categorical, labels = (a[rows] for a in arrays)
        checksum += float(labels[0, 0])
    seconds = time.perf_counter() - start
    return {
        "seconds_per_batch": seconds / num_batches,
        "rows_per_second": num_batches * batch_size / seconds,
        "bytes_per_batch": int(sum(a[idx[0]].nbytes for a in arrays)),
    }


def _time(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def record_read_rates(builder, split: str, *, num: int = 5000, batch: int = 1000) -> dict:
    source = builder.as_data_source(split)
    num = min(num, len(source))
    one, _ = _time(lambda: [source[i] for i in range(num)])
    batched, _ = _time(lambda: [source.__getitems__(list(range(s, min(num, s + batch)))) for s in range(0, num, batch)])
    return {"one_at_a_time": num / one, "batched": num / batched}


def main(argv):
    del argv
    folder, _, test_path = census.find_census_files(FLAGS.data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        t_prepare, frame = _time(lambda: census_format.read_census_file(test_path))
        rows.append(("parse (fast): raw .gz -> columns", t_prepare, f"< {PREPARE_TARGET_S:g}"))

        cache = tmp / "cache"
        t_first, _ = _time(lambda: load("census_income", data_dir=folder, cache_dir=cache))
        rows.append(("first load (prepare + encode splits)", t_first, f"< {PREPARE_TARGET_S:g}"))
        loads = [_time(lambda: load("census_income", data_dir=folder, cache_dir=cache)) for _ in range(FLAGS.repeats)]
        t_load, data = min(loads, key=lambda x: x[0])
        rows.append(("load prepared splits (warm cache, memory-mapped)", t_load, f"< {LOAD_TARGET_S:g}"))
        t_read, _ = _time(lambda: [np.asarray(a).sum() for s in data.splits().values() for a in s.as_dict().values()])
        rows.append(("... and read every array once", t_load + t_read, f"< {LOAD_TARGET_S:g}"))

        rates = {}
        if FLAGS.tfds:
            from mtl.data.builders.census_income_kdd import CensusIncomeKdd
            from mtl.data.builders.columnar import prepare, read_frame

            t_build, builder = _time(lambda: prepare(CensusIncomeKdd, data_dir=tmp / "tfds", manual_dir=folder))
            t_read, _ = _time(lambda: read_frame(builder, "test"))
            rows.append(("prepare (TFDS): array_record build", t_build, f"< {PREPARE_TARGET_S:g}"))
            rows.append(("TFDS split -> columns (batched read, once)", t_read, ""))
            rates = record_read_rates(builder, "test")

        gather = host_gather_rate(data.train, batch_size=FLAGS.batch_size, num_batches=FLAGS.num_batches)

    print(f"\nCensus-Income (KDD), {test_path} ({sum(len(s) for s in data.splits().values()):,} rows, "
          f"protocol {data.info['protocol']})\n")  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  target")
    print(f"{'-' * width}  {'-' * 8}  ------")
    for name, seconds, target in rows:
        ok = ""
        if target:
            ok = "ok" if seconds < float(target[2:]) else "MISSED"
        print(f"{name:<{width}}  {seconds:8.3f}  {target} {ok}".rstrip())
    if rates:
        print(f"\narray_record reads: {rates['one_at_a_time']:,.0f} records/s one at a time, "
              f"{rates['batched']:,.0f} records/s batched (__getitems__ of 1000)")  # fmt: skip
    print(f"\nhost gather (numpy fancy indexing, batch {FLAGS.batch_size}, {FLAGS.num_batches} batches): "
          f"{gather['seconds_per_batch'] * 1e6:.1f} us/batch, {gather['rows_per_second']:,.0f} rows/s, "
          f"{gather['bytes_per_batch'] / 1024:.0f} KiB/batch")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
