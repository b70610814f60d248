"""Loading large AliExpress- and Ali-CCP-format files: time and memory against pyarrow, side by side.

    python -m benchmarks.data_loading --rows=5000000 --out=/tmp/mtl_bench
    python -m benchmarks.data_loading --formats=aliexpress --rows=20000000 --out=/tmp/mtl_bench --read_csv=false
    python -m benchmarks.data_loading --formats=parquet --rows=1000000 --out=/tmp/mtl_bench

For each format the files are generated first when absent
(``benchmarks/make_ecommerce_files.py``, same ``--rows`` and ``--out``). Then, in
one run, each measurement in a fresh Python process (so that peak memory is that
step's alone: ``VmHWM`` of ``/proc/self/status``, which, unlike ``getrusage``'s
``ru_maxrss``, does not carry the parent's peak across ``exec``):

* ``pyarrow.csv.read_csv`` of every file of the dataset (default type inference,
  multi-threaded): seconds, the reference;
* our first load, ``mtl.data.load(<format>, data_dir=..., cache_dir=<empty folder>)``:
  parse, encoded splits written to the prepared cache; seconds, the
  ratio to ``read_csv`` (target <= 2) and the peak resident memory of the process
  against the bytes of the final arrays (the train/validation/test ``numeric``,
  ``categorical`` and ``labels`` arrays; target <= 2). The process's memory after
  importing ``mtl.data``, before reading anything, is shown too, and the reader's share of
  the first load (``read s``: every file into raw columns, ``mtl.data.reader.read_columns``;
  the rest is statistics, encoding and writing the prepared arrays) with its ratio to the
  reference (for information: the targets are on the whole first load);
* the cached load (a new process, same cache): memory-mapped arrays, target < 2 s;
  and, for information, the time to read every array once from the page cache.

``parquet`` is the AliExpress files converted to Parquet (snappy), loaded with the
tabular loader (the AliExpress loader's column roles; validation cut from the train
file); its reference is ``pyarrow.parquet.read_table`` of the same files (target for
the ratio: <= 2 as well). For it, each round also times ``bare``: the simplest program
that does the same work with pyarrow and numpy, in a few lines and without checks (read
the needed columns with ``read_table``, ids for the values seen twice in training,
training mean and standard deviation of each numeric column in the split's row order,
scaled and gathered into each split's row-major arrays, written as ``.npy`` files and
flushed to disk), holding everything in memory at once, once on one thread and once with
its columns and arrays spread over two (``bare 2t``): how much of our first load is the
work itself (``ours / bare``), and how far that work alone is from ``read_table``. Its
numeric and label arrays are byte-identical to ours and its categorical ids group the rows
as ours do (numbered in another order). For the delimited formats each round also times
``stream``: pyarrow's streaming CSV reader alone (``open_csv``, 1 MiB blocks, as our loads
read), its batches dropped, against ``read_csv``, which reads faster but holds the whole
table (its peak memory is printed with it in the JSON lines).

The measurements alternate ``--repeats`` times (read_csv, first load, cached load)
and the table shows each round; the machine is shared, so compare within a row.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import textwrap

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("formats", ["aliexpress", "ali_ccp"], "Datasets to measure: aliexpress, ali_ccp, parquet.")
flags.DEFINE_integer("rows", 1_000_000, "Total rows per dataset (generated when absent).")
flags.DEFINE_string("out", "/tmp/mtl_bench", "Folder for the generated files and the caches.")
flags.DEFINE_integer("repeats", 1, "Alternating rounds.")
flags.DEFINE_bool("keep_cache", False, "Keep the cache folders afterwards (they are as large as the arrays).")
flags.DEFINE_bool("read_csv", True, "Also time pyarrow.csv.read_csv (it holds the whole table in memory: "
                  "about 13 GB for 20M AliExpress rows, so skip it there).")

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIRST_LOAD_RATIO_TARGET = 2.0
MEMORY_RATIO_TARGET = 2.0
CACHED_LOAD_TARGET_S = 2.0

_PRELUDE = """
import json, sys, time
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
"""

_READ_CSV = _PRELUDE + """
import pyarrow.csv
files = json.loads(sys.argv[1])
start = time.perf_counter()
rows = sum(pyarrow.csv.read_csv(f).num_rows for f in files)
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "peak_mb": peak_mb()}))
"""

_STREAM_CSV = _PRELUDE + """
import pyarrow.csv
files = json.loads(sys.argv[1])
start = time.perf_counter()
rows = 0
for f in files:  # the streaming reader our loads use (1 MiB blocks), batches dropped as they come
    for batch in pyarrow.csv.open_csv(f, read_options=pyarrow.csv.ReadOptions(block_size=1 << 20)):
        rows += batch.num_rows
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "peak_mb": peak_mb()}))
"""

_READ_PARQUET = _PRELUDE + """
import pyarrow.parquet
files = json.loads(sys.argv[1])
start = time.perf_counter()
rows = sum(pyarrow.parquet.read_table(f).num_rows for f in files)
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows, "peak_mb": peak_mb()}))
"""

_BARE_PARQUET = _PRELUDE + """
import os
from concurrent.futures import ThreadPoolExecutor
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
(train_file, test_file), categorical, numeric, labels, out, threads = json.loads(sys.argv[1])
start = time.perf_counter()
pool = ThreadPoolExecutor(threads)  # columns, and then arrays to write, spread over the threads
table = pa.concat_tables([pq.read_table(f, columns=categorical + numeric + labels) for f in (train_file, test_file)])
n_train_file = pq.read_metadata(train_file).num_rows
perm = np.random.default_rng(0).permutation(n_train_file)  # the tabular loader's split="0.9,0.1,0"
cut = int(n_train_file * 0.9)
splits = {"train": perm[:cut], "validation": perm[cut:], "test": np.arange(n_train_file, table.num_rows)}
def ids(c):  # 0 for values seen fewer than twice in training (min_count=2)
    codes = pc.dictionary_encode(table.column(c)).combine_chunks().indices.to_numpy()
    kept = np.bincount(codes[splits["train"]], minlength=codes.max() + 1) >= 2
    return "categorical", np.where(kept, np.cumsum(kept), 0).astype(np.int32)[codes]
def feature(c):  # integers with at most 50 distinct values are categorical, as the loader infers them
    if c in categorical:
        return ids(c)
    x = table.column(c).to_numpy().astype(np.float64)
    present = x[~np.isnan(x)]
    if (present == np.round(present)).all() and len(np.unique(present)) <= 50:
        return ids(c)
    x = x.astype(np.float32)  # training mean and std in the split's row order, missing -> 0 after scaling
    train = x[splits["train"]].astype(np.float64)
    train = train[~np.isnan(train)]
    mean, std = train.mean(), train.std()
    v = (x.astype(np.float64) - mean) / (std if std > 1e-9 * max(1.0, abs(mean)) else 1.0)
    return "numeric", np.where(np.isnan(v), 0.0, v).astype(np.float32)
features = list(pool.map(feature, categorical + numeric))
columns = {k: [x for kind, x in features if kind == k] for k in ("numeric", "categorical")}
columns["labels"] = [table.column(c).to_numpy().astype(np.float32) for c in labels]
del table
def write(name_key):
    name, key = name_key
    a = np.stack([x[splits[name]] for x in columns[key]], axis=1)
    with open(os.path.join(out, f"{name}.{key}.npy"), "wb") as f:
        np.save(f, a)
        f.flush()
        os.fsync(f.fileno())
    return a.nbytes / 2**20
array_mb = sum(pool.map(write, [(name, key) for name in splits for key in columns]))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak_mb(), "array_mb": array_mb}))
"""

_LOAD = _PRELUDE + """
import numpy as np
import mtl.data
from mtl.data import reader, tabular
name, kwargs, cache_dir, touch = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
read_seconds = [0.0]
def timed(read_columns):  # the reader's share of the load: every file into raw columns
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return read_columns(*args, **kwargs)
        finally:
            read_seconds[0] += time.perf_counter() - start
    return wrapper
reader.read_columns, tabular.read_columns = timed(reader.read_columns), timed(tabular.read_columns)
base_mb = peak_mb()
start = time.perf_counter()
data = mtl.data.load(name, cache_dir=cache_dir, **kwargs)
seconds = time.perf_counter() - start
arrays = [a for s in data.splits().values() for a in (s.numeric, s.categorical, s.labels)]
def mapped(a):
    while a is not None and not isinstance(a, np.memmap):
        a = a.base
    return a is not None
out = {"seconds": seconds, "read_seconds": read_seconds[0], "peak_mb": peak_mb(), "base_mb": base_mb,
       "array_mb": sum(a.nbytes for a in arrays) / 2**20, "rows": sum(len(s) for s in data.splits().values()),
       "memory_mapped": all(mapped(a) for a in arrays)}
if touch:  # read every array once (from the page cache)
    start = time.perf_counter()
    for a in arrays:
        np.add.reduce(a, axis=None, dtype=np.float64)
    out["touch_seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def _run(code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, capture_output=True,
                            text=True)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _parquet_files(out: pathlib.Path) -> list[pathlib.Path]:
    """The AliExpress files as Parquet, converted when absent."""
    import pyarrow.csv
    import pyarrow.parquet

    _, files = _files("aliexpress", out)
    converted = [f.with_suffix(".parquet") for f in files]
    for f, p in zip(files, converted):
        if not p.is_file():
            pyarrow.parquet.write_table(pyarrow.csv.read_csv(f), p)
    return converted


def _loader(fmt: str, data_dir: pathlib.Path, files: list[pathlib.Path]) -> tuple[str, dict]:
    """The loader and its arguments for a format."""
    if fmt != "parquet":
        return fmt, {"data_dir": str(data_dir)}
    from mtl.data.aliexpress import CATEGORICAL, ID_COLUMN

    return "tabular", dict(path=str(files[0]), test_path=str(files[1]), label_columns="click,conversion",
                           drop_columns=ID_COLUMN, categorical_columns=",".join(CATEGORICAL), split="0.9,0.1,0",
                           verbose=False)  # fmt: skip


def _files(fmt: str, out: pathlib.Path) -> tuple[pathlib.Path, list[pathlib.Path]]:
    """The dataset folder and its files, generated when absent."""
    if fmt == "parquet":
        files = _parquet_files(out)
        return files[0].parent, files
    data_dir = out / fmt / str(FLAGS.rows)
    if fmt == "aliexpress":
        folder = data_dir / "aliexpress" / "AliExpress_NL"
        files = [folder / "train.csv", folder / "test.csv"]
    else:
        folder = data_dir / "ali_ccp"
        files = [folder / f"ali_ccp_{s}.csv" for s in ("train", "val", "test")]
    if not all(f.is_file() for f in files):
        print(f"generating {FLAGS.rows:,} {fmt} rows in {data_dir} ...", flush=True)
        subprocess.run([sys.executable, "-m", "benchmarks.make_ecommerce_files", f"--format={fmt}",
                        f"--rows={FLAGS.rows}", f"--out={data_dir}"], cwd=ROOT, check=True)  # fmt: skip
    return data_dir, files


def _same_arrays(name: str, kwargs: dict, cache: pathlib.Path, bare_out: pathlib.Path) -> bool:
    """Whether the bare program's arrays are ours (from the cache): numeric and labels byte for byte,
    categorical ids one-to-one with ours on every split's rows."""
    import numpy as np

    import mtl.data

    data = mtl.data.load(name, cache_dir=str(cache), **kwargs)
    for split_name, split in data.splits().items():
        for key in ("numeric", "labels", "categorical"):
            ours, bare = getattr(split, key), np.load(bare_out / f"{split_name}.{key}.npy")
            if ours.shape != bare.shape or (key != "categorical" and not np.array_equal(ours, bare)):
                return False
            for a, b in zip(ours.T if key == "categorical" else (), bare.T):  # a bijection between the ids
                pairs = np.unique(a.astype(np.int64) << 32 | b)
                if not len(pairs) == len(np.unique(a)) == len(np.unique(b)):
                    return False
    return True


def main(argv):
    del argv
    out = pathlib.Path(FLAGS.out)
    results, same_as_bare = [], []
    for fmt in FLAGS.formats:
        data_dir, files = _files(fmt, out)
        size_mb = sum(f.stat().st_size for f in files) / 2**20
        for r in range(FLAGS.repeats):
            cache = out / f"cache-{fmt}-{FLAGS.rows}-{r}"
            shutil.rmtree(cache, ignore_errors=True)
            reference = _READ_PARQUET if fmt == "parquet" else _READ_CSV
            use_ref = FLAGS.read_csv or fmt == "parquet"
            ref = _run(reference, json.dumps([str(f) for f in files])) if use_ref else {"seconds": float("nan")}
            name, kwargs = _loader(fmt, data_dir, files)
            bare = bare2 = stream = {"seconds": float("nan")}
            if fmt != "parquet":
                stream = _run(_STREAM_CSV, json.dumps([str(f) for f in files]))
            if fmt == "parquet":
                from mtl.data.aliexpress import CATEGORICAL, LABELS, NUMERICAL

                bare_out = out / f"bare-{FLAGS.rows}-{r}"
                bare_out.mkdir(parents=True, exist_ok=True)
                bare, bare2 = (_run(_BARE_PARQUET, json.dumps([[str(f) for f in files], CATEGORICAL, NUMERICAL,
                                                               LABELS, str(bare_out), threads]))
                               for threads in (1, 2))  # fmt: skip
            first = _run(_LOAD, name, json.dumps(kwargs), str(cache), "0")
            again = _run(_LOAD, name, json.dumps(kwargs), str(cache), "1")
            if fmt == "parquet":
                same_as_bare.append(_same_arrays(name, kwargs, cache, bare_out))
                shutil.rmtree(bare_out, ignore_errors=True)
            if not FLAGS.keep_cache:
                shutil.rmtree(cache, ignore_errors=True)
            results.append((fmt, r, size_mb, ref, first, again, bare, bare2, stream))
            print(json.dumps({"format": fmt, "round": r, "read_csv": ref, "first": first, "cached": again,
                              "bare": bare, "bare2": bare2, "stream": stream}), flush=True)  # fmt: skip

    print(f"\nrows per dataset: {FLAGS.rows:,} (measured one after another in fresh processes; machine shared)\n")
    print("reference: pyarrow.csv.read_csv, or pyarrow.parquet.read_table for parquet")
    head = (f"{'format':<10} {'round':>5} {'file MiB':>9} {'pyarrow s':>10} {'first load s':>12} {'ratio':>6} "
            f"{'read s':>6} {'ratio':>6} {'peak RSS MiB':>12} {'arrays MiB':>10} {'RSS/arrays':>10} "
            f"{'import MiB':>10} {'cached s':>8} {'read all s':>10} {'bare s':>6} {'ratio':>6} {'ours/bare':>9} "
            f"{'bare 2t s':>9} {'ratio':>6} {'stream s':>8} {'ratio':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for fmt, r, size_mb, ref, first, again, bare, bare2, stream in results:
        ratio = first["seconds"] / ref["seconds"]
        mem = first["peak_mb"] / first["array_mb"]
        print(f"{fmt:<10} {r:>5} {size_mb:>9.0f} {ref['seconds']:>10.1f} {first['seconds']:>12.1f} {ratio:>6.2f} "
              f"{first['read_seconds']:>6.1f} {first['read_seconds'] / ref['seconds']:>6.2f} "
              f"{first['peak_mb']:>12.0f} {first['array_mb']:>10.0f} {mem:>10.2f} {first['base_mb']:>10.0f} "
              f"{again['seconds']:>8.3f} {again.get('touch_seconds', float('nan')):>10.1f} {bare['seconds']:>6.1f} "
              f"{bare['seconds'] / ref['seconds']:>6.2f} {first['seconds'] / bare['seconds']:>9.2f} "
              f"{bare2['seconds']:>9.1f} {bare2['seconds'] / ref['seconds']:>6.2f} {stream['seconds']:>8.1f} "
              f"{stream['seconds'] / ref['seconds']:>6.2f}")  # fmt: skip
    print(f"\ntargets: ratio <= {FIRST_LOAD_RATIO_TARGET:g}, RSS/arrays <= {MEMORY_RATIO_TARGET:g}, "
          f"cached < {CACHED_LOAD_TARGET_S:g} s; arrays memory-mapped on the cached load: "
          f"{all(a[5]['memory_mapped'] for a in results)}")  # fmt: skip
    if same_as_bare:
        print(f"bare arrays the same as ours (numeric and labels byte for byte, categorical ids grouping the rows "
              f"alike), each round: {same_as_bare}")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
