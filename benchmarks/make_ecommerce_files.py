"""Writes large AliExpress- and Ali-CCP-format files for loading benchmarks.

    python -m benchmarks.make_ecommerce_files --format=aliexpress --rows=5000000 --out=/tmp/ecommerce
    python -m benchmarks.make_ecommerce_files --format=ali_ccp --rows=5000000 --out=/tmp/ecommerce
    python -m benchmarks.make_ecommerce_files --format=ali_ccp --layout=paddlerec --rows=1000000 --out=/tmp/ecommerce

The files have exactly the layouts the loaders read (``docs/data.md``):

* ``aliexpress``: ``OUT/aliexpress/AliExpress_<country>/train.csv`` and
  ``test.csv`` (MTReclib CSV: ``search_id, categorical_1..16, numerical_1..63,
  click, conversion``); ``--rows`` is the total, ``--test_fraction`` of it goes
  to ``test.csv``.
* ``ali_ccp``, ``--layout=torch_rechub``: ``OUT/ali_ccp/ali_ccp_{train,val,test}.csv``
  (``click, purchase``, 23 sparse fields, 8 dense fields); ``--layout=paddlerec``:
  ``OUT/ali_ccp/train.txt`` and ``test.txt`` (``id,click,conversion,field:feature,...``).

Values are drawn from the shared public samples' distributions (``--source_dir``,
default ``$MTL_DATA_DIR`` or ``../shared/data``): each categorical / numeric
column resamples its sample values, numbers perturbed by a few percent so they
are not all repeats, categorical columns with an occasional unseen id; Ali-CCP's
sparse ids follow a skewed power law over realistic cardinalities (``101`` is the
user id). Labels: a click rate of about 3% driven by a few features, conversion
only on clicked rows (about 10% of clicks, so well under 1% of impressions).

Rows are generated and written ``--chunk_rows`` at a time (pyarrow's CSV
writer), so 20M rows need only one chunk in memory. Nothing here is downloaded.
"""

from __future__ import annotations

import os
import pathlib
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from absl import app, flags

from mtl.data import ali_ccp as ccp
from mtl.data import aliexpress

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "aliexpress", ["aliexpress", "ali_ccp"], "Which dataset's file format.")
flags.DEFINE_enum("layout", "torch_rechub", ["torch_rechub", "paddlerec"], "Ali-CCP file layout.")
flags.DEFINE_integer("rows", 1_000_000, "Total rows over all files.")
flags.DEFINE_string("out", "/tmp/ecommerce", "Output root (a dataset folder is made inside).")
flags.DEFINE_string("country", "NL", "AliExpress country folder name.")
flags.DEFINE_float("test_fraction", 0.2,
                   "Share of rows in the test file (Ali-CCP torch-rechub: val and test each half).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_integer("chunk_rows", 250_000, "Rows generated and written at a time.")
flags.DEFINE_string("source_dir", "",
                    "Shared data root with the public samples (default $MTL_DATA_DIR or ../shared/data).")

# Rough Ali-CCP cardinalities (full data); a field's ids are drawn from min(cardinality, rows // divisor).
ALI_CCP_CARDINALITY = {
    "101": 400_000, "121": 98, "122": 14, "124": 3, "125": 8, "126": 4, "127": 4, "128": 3, "129": 5,
    "205": 4_000_000, "206": 9_000, "207": 250_000, "210": 100_000, "216": 250_000, "508": 9_000,
    "509": 500_000, "702": 400_000, "853": 200_000, "301": 4, "109_14": 10_000, "110_14": 1_000_000,
    "127_14": 1_000_000, "150_14": 100_000,
}  # fmt: skip


def _source_dir() -> pathlib.Path:
    if FLAGS.source_dir:
        return pathlib.Path(FLAGS.source_dir)
    env = os.environ.get("MTL_DATA_DIR")
    if env:
        return pathlib.Path(env)
    return pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def _sample_columns(path: pathlib.Path) -> dict[str, np.ndarray]:
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    return {name: table.column(name).to_numpy() for name in table.column_names}


class ColumnSampler:
    """Resamples one column of a public sample: numbers perturbed, categories with a few unseen ids."""

    def __init__(self, values: np.ndarray, *, categorical: bool):
        self.categorical = categorical
        self.values = np.asarray(values, np.int64 if categorical else np.float64)
        self.high = int(self.values.max()) + 1 if categorical and self.values.size else 1

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = self.values[rng.integers(0, len(self.values), n)]
        if self.categorical:  # about 2% of rows take an id the sample never shows
            unseen = rng.random(n) < 0.02
            x = np.where(unseen, self.high + rng.integers(0, max(4, 3 * self.high), n), x)
            return x.astype(np.int64)
        x = x * np.exp(rng.normal(0.0, 0.05, n))  # a few percent around each sample value
        return np.round(x, 6)


def _labels(rng: np.random.Generator, score: np.ndarray, click_rate: float, cvr: float):
    """Clicks at about ``click_rate`` (more likely for high ``score``); conversions only on clicks."""
    z = (score - score.mean()) / (score.std() + 1e-9)
    logit = np.log(click_rate / (1 - click_rate)) + 0.6 * z - 0.18
    click = rng.random(len(z)) < 1.0 / (1.0 + np.exp(-logit))
    conversion = click & (rng.random(len(z)) < cvr * np.exp(0.3 * z - 0.05))
    return click.astype(np.int64), conversion.astype(np.int64)


class CsvSink:
    """Appends pyarrow tables to one CSV file (header once), no quoting of numbers."""

    def __init__(self, path: pathlib.Path, schema: pa.Schema):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = open(path, "wb")
        self.file.write((",".join(schema.names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        self.writer = pacsv.CSVWriter(self.file, schema, write_options=options)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self.writer.close()
        self.file.close()


def _split_counts(total: int, fractions: list[float]) -> list[int]:
    counts = [int(total * f) for f in fractions]
    counts[0] = total - sum(counts[1:])
    return counts


def write_aliexpress(out: pathlib.Path, rows: int, rng: np.random.Generator) -> list[pathlib.Path]:
    sample = _sample_columns(_source_dir() / "aliexpress" / "aliexpress_train_sample.csv")
    cat = {c: ColumnSampler(sample[c], categorical=True) for c in aliexpress.CATEGORICAL}
    num = {c: ColumnSampler(sample[c], categorical=False) for c in aliexpress.NUMERICAL}
    folder = out / "aliexpress" / f"AliExpress_{FLAGS.country}"
    names = ("search_id",) + aliexpress.CATEGORICAL + aliexpress.NUMERICAL + ("click", "conversion")
    schema = pa.schema([(n, pa.float64() if n.startswith("numerical") else pa.int64()) for n in names])
    files = []
    next_search_id = 0
    counts = _split_counts(rows, [1 - FLAGS.test_fraction, FLAGS.test_fraction])
    for name, count in zip(("train.csv", "test.csv"), counts):
        sink = CsvSink(folder / name, schema)
        for start in range(0, count, FLAGS.chunk_rows):
            n = min(FLAGS.chunk_rows, count - start)
            session_sizes = rng.integers(5, 60, n // 5 + 2)  # a search shows 5-60 items
            search = np.repeat(np.arange(len(session_sizes)), session_sizes)[:n] + next_search_id
            next_search_id = int(search[-1]) + 1
            columns = {"search_id": search}
            columns.update({c: s.draw(rng, n) for c, s in cat.items()})
            columns.update({c: s.draw(rng, n) for c, s in num.items()})
            score = columns["numerical_25"] + columns["numerical_44"] - 0.5 * columns["numerical_30"]
            columns["click"], columns["conversion"] = _labels(rng, score, 0.03, 0.10)
            sink.write(pa.table([columns[c] for c in names], schema=schema))
        sink.close()
        files.append(sink.path)
    return files


def _power_law_ids(rng: np.random.Generator, n: int, cardinality: int) -> np.ndarray:
    """Ids in ``[1, cardinality]``, low ids far more frequent (as popular items and users are)."""
    u = rng.random(n)
    return (1 + np.floor(cardinality * u**3)).astype(np.int64)


def _cardinalities(rows: int) -> dict[str, int]:
    return {f: max(2, min(c, rows // 4)) for f, c in ALI_CCP_CARDINALITY.items()}


def write_ali_ccp(out: pathlib.Path, rows: int, rng: np.random.Generator) -> list[pathlib.Path]:
    sample = _sample_columns(_source_dir() / "ali_ccp" / "torch_rechub_samples" / "ali_ccp_train_sample.csv")
    dense = {c: ColumnSampler(sample[c], categorical=False) for c in ccp.DENSE_FIELDS}
    cards = _cardinalities(rows)
    folder = out / "ali_ccp"
    if FLAGS.layout == "torch_rechub":
        names = ("click", "purchase") + ccp.SPARSE_FIELDS + ccp.DENSE_FIELDS
        schema = pa.schema([(n, pa.float64() if n.startswith("D") else pa.int64()) for n in names])
        half = FLAGS.test_fraction / 2
        parts = zip(("ali_ccp_train.csv", "ali_ccp_val.csv", "ali_ccp_test.csv"),
                    _split_counts(rows, [1 - 2 * half, half, half]))
    else:
        parts = zip(("train.txt", "test.txt"), _split_counts(rows, [1 - FLAGS.test_fraction, FLAGS.test_fraction]))
    files = []
    line_id = 0
    for name, count in parts:
        path = folder / name
        sink = CsvSink(path, schema) if FLAGS.layout == "torch_rechub" else None
        if sink is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "wb")
        for start in range(0, count, FLAGS.chunk_rows):
            n = min(FLAGS.chunk_rows, count - start)
            sparse = {f: _power_law_ids(rng, n, cards[f]) for f in ccp.SPARSE_FIELDS}
            dense_values = {c: dense[c].draw(rng, n) for c in ccp.DENSE_FIELDS}
            score = dense_values["D508"] + dense_values["D109_14"] - np.log1p(sparse["205"]) / 10
            click, conversion = _labels(rng, score, 0.039, 0.06)
            if sink is not None:
                columns = {"click": click, "purchase": conversion, **sparse, **dense_values}
                sink.write(pa.table([columns[c] for c in names], schema=schema))
            else:
                fh.write(_paddlerec_lines(rng, line_id, click, conversion, sparse))
                line_id += n
        if sink is not None:
            sink.close()
        else:
            fh.close()
        files.append(path)
    return files


def _paddlerec_lines(rng, first_id: int, click, conversion, sparse: dict[str, np.ndarray]) -> bytes:
    """``id,click,conversion,field:feature,...`` lines; multi-valued fields carry 1-8 ids each."""
    n = len(click)
    prefix = pc.binary_join_element_wise(
        pa.array(np.arange(first_id, first_id + n)).cast(pa.string()),
        pa.array(click).cast(pa.string()),
        pa.array(conversion).cast(pa.string()),
        ",",
    )
    pieces = [prefix]
    for field, ids in sparse.items():
        if field in ccp.MULTI_VALUED_FIELDS:
            counts = rng.integers(0, 9, n)  # 0-8 ids; 0 = field absent on this line
            flat = np.repeat(ids, counts) + rng.integers(0, 50, counts.sum())
            items = pc.binary_join_element_wise(pa.scalar(field), pa.array(flat).cast(pa.string()), ":")
            offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
            joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), items), ",")
            pieces.append(pc.if_else(pa.array(counts > 0), pc.binary_join_element_wise(",", joined, ""), ""))
        else:
            item = pc.binary_join_element_wise(pa.scalar("," + field), pa.array(ids).cast(pa.string()), ":")
            pieces.append(item)
    lines = pc.binary_join_element_wise(*pieces, "")
    return ("\n".join(lines.to_pylist()) + "\n").encode()


def main(argv):
    del argv
    rng = np.random.default_rng(FLAGS.seed)
    out = pathlib.Path(FLAGS.out)
    start = time.perf_counter()
    files = (write_aliexpress if FLAGS.format == "aliexpress" else write_ali_ccp)(out, FLAGS.rows, rng)
    seconds = time.perf_counter() - start
    for f in files:
        print(f"{f}  {f.stat().st_size / 2**20:,.1f} MiB")
    print(f"{FLAGS.rows:,} rows in {seconds:.1f} s")


if __name__ == "__main__":
    app.run(main)
