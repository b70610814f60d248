"""The tabular loader's Parquet/Arrow input, several files per split, joins, splits by a column,
rare categories (min_count), free-text columns and label transforms."""

import re

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from mtl.data import DataError, load
from mtl.data.base import TaskSpec, original_units
from mtl.data.frame import Factor
from mtl.data.preprocess import categorical_encoder
from mtl.data.reader import file_format


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table({
        "click": pa.array(np.arange(n) % 2, pa.int64()),
        "buy": pa.array((np.arange(n) % 3 == 1).astype(np.int64)),
        "city": pa.array([f"c{i % 7}" for i in range(n)]),
        "price": pa.array(np.round(rng.uniform(0, 100, n), 2)),
        "age": pa.array(20 + np.arange(n) % 60, pa.int64()),
        "size": pa.array(np.arange(n) % 4, pa.int32()),
    })  # fmt: skip


def _same(a, b):
    assert a.categorical_names == b.categorical_names and a.numeric_names == b.numeric_names
    assert a.vocab_sizes == b.vocab_sizes
    for name in ("train", "validation", "test"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(x.categorical, y.categorical)
        np.testing.assert_allclose(x.numeric, y.numeric, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(x.labels, y.labels)


def test_parquet_and_feather_load_like_the_csv_of_the_same_rows(tmp_path):
    """The delimited reader is the independent reference: same types, vocabularies, arrays."""
    table = _table()
    pacsv.write_csv(table, tmp_path / "d.csv")
    pq.write_table(table, tmp_path / "d.parquet")
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=25)  # a column of several row groups
    feather.write_feather(table, tmp_path / "d.feather")
    kw = dict(label_columns="click,buy", verbose=False, min_count=1)
    csv = load("tabular", path=str(tmp_path / "d.csv"), **kw)
    assert csv.info["column_types"] == {"city": "categorical", "price": "numeric", "age": "numeric",
                                        "size": "categorical"}  # fmt: skip
    for name in ("d.parquet", "groups.parquet", "d.feather"):
        other = load("tabular", path=str(tmp_path / name), **kw)
        _same(csv, other)
        assert other.info["column_types"] == csv.info["column_types"]


def test_the_format_comes_from_the_content_before_the_extension(tmp_path):
    pq.write_table(_table(), tmp_path / "really_parquet.csv")
    feather.write_feather(_table(), tmp_path / "really_arrow.txt")
    pacsv.write_csv(_table(), tmp_path / "text.parquet.csv")
    assert file_format(tmp_path / "really_parquet.csv") == "parquet"
    assert file_format(tmp_path / "really_arrow.txt") == "arrow"
    assert file_format(tmp_path / "text.parquet.csv") == "delimited"
    data = load("tabular", path=str(tmp_path / "really_parquet.csv"), label_columns="click", verbose=False)
    assert len(data.train) + len(data.validation) + len(data.test) == 120
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken.parquet: cannot be read as Parquet"):
        load("tabular", path=str(tmp_path / "broken.parquet"), label_columns="click", verbose=False)


def test_parquet_label_errors_name_file_row_and_column(tmp_path):
    t = pa.table({"y": pa.array([0, 1, 2, 1], pa.int64()), "x": pa.array([1.5, 2.5, 3.5, 4.5])})
    pq.write_table(t, tmp_path / "bad.parquet", row_group_size=2)  # the bad value is in the second row group
    with pytest.raises(DataError, match=r"bad.parquet, line 3, column 'y': label value '2' is not 0 or 1 "
                                        r"in binary task 'y' \(1 such rows\)"):  # fmt: skip
        load("tabular", path=str(tmp_path / "bad.parquet"), label_columns="y", verbose=False)
    t = pa.table({"y": pa.array([0, None, 1], pa.int64()), "x": pa.array([1.5, 2.5, 3.5])})
    pq.write_table(t, tmp_path / "null.parquet")
    with pytest.raises(DataError, match=r"null.parquet, line 2, column 'y': label value is missing"):
        load("tabular", path=str(tmp_path / "null.parquet"), label_columns="y", verbose=False)


def test_several_files_per_split_are_read_in_order(tmp_path):
    t = _table(90)
    pq.write_table(t.slice(0, 60), tmp_path / "a.parquet")
    pq.write_table(t.slice(60, 30), tmp_path / "b.parquet")
    pq.write_table(t, tmp_path / "ab.parquet")
    val = _table(20, seed=1)
    pq.write_table(val.slice(0, 10), tmp_path / "v1.parquet")
    pacsv.write_csv(val.slice(10, 10), tmp_path / "v2.csv")  # formats may differ between files
    kw = dict(label_columns="click", test_path=str(tmp_path / "ab.parquet"), verbose=False)
    data = load("tabular", path=f"{tmp_path / 'a.parquet'},{tmp_path / 'b.parquet'}",
                validation_path=[str(tmp_path / "v1.parquet"), str(tmp_path / "v2.csv")], **kw)
    assert (len(data.train), len(data.validation), len(data.test)) == (90, 20, 90)
    np.testing.assert_array_equal(data.train.labels[:, 0], t.column("click").to_numpy())
    np.testing.assert_array_equal(data.validation.labels[:, 0], val.column("click").to_numpy())
    np.testing.assert_array_equal(data.train.categorical, data.test.categorical)  # the same rows, in order


def test_split_by_column_values(tmp_path):
    days = np.array([20220425, 20220504, 20220505, 20220506, 20220507, 20220508] * 10)
    y = np.arange(60) % 2
    pq.write_table(pa.table({"date": days, "y": y, "x": np.arange(60) * 0.5}), tmp_path / "log.parquet")
    data = load("tabular", path=str(tmp_path / "log.parquet"), label_columns="y", split_column="date",
                split_boundaries="20220505,20220507", verbose=False)  # fmt: skip
    rows = {"train": days < 20220505, "validation": (days >= 20220505) & (days < 20220507), "test": days >= 20220507}
    for name, mask in rows.items():
        split = getattr(data, name)
        assert len(split) == mask.sum()
        mean, std = data.info["numeric_train_mean_std"]["x"]
        np.testing.assert_allclose(split.numeric[:, 0] * std + mean, (np.arange(60) * 0.5)[mask], atol=1e-4)
    assert data.numeric_names == ("x",)  # the split key is no feature
    iso = np.array(["2022-04-25", "2022-05-04", "2022-05-05", "2022-05-07"] * 5)
    pacsv.write_csv(pa.table({"day": iso, "y": np.arange(20) % 2, "x": np.arange(20.0)}), tmp_path / "iso.csv")
    data = load("tabular", path=str(tmp_path / "iso.csv"), label_columns="y", split_column="day",
                split_boundaries="2022-05-05,2022-05-07", allow_single_class=True, verbose=False)  # fmt: skip
    assert (len(data.train), len(data.validation), len(data.test)) == (10, 5, 5)
    assert "compared as text" in data.info["protocol_description"]


def test_joins_fill_side_columns_the_log_wins_and_absent_keys_are_missing(tmp_path):
    log = pa.table({"uid": [1, 2, 3, 1, 9, 2, 3, 1], "y": [0, 1, 0, 1, 0, 1, 1, 0],
                    "tag": ["a", "b", "a", "b", "a", "b", "a", "b"]})  # fmt: skip
    users = pa.table({"uid": [3, 2, 1], "age": [30.0, 20.0, 10.0], "tag": ["z", "z", "z"],
                      "level": ["hi", "lo", "hi"]})  # fmt: skip
    pq.write_table(log, tmp_path / "log.parquet")
    pacsv.write_csv(users, tmp_path / "users.csv")
    data = load("tabular", path=str(tmp_path / "log.parquet"), label_columns="y", joins=f"uid={tmp_path / 'users.csv'}",
                categorical_columns="uid,tag,level", numeric_columns="age", min_count=1, allow_single_class=True,
                validation_path=str(tmp_path / "log.parquet"), test_path=str(tmp_path / "log.parquet"),
                verbose=False)  # fmt: skip
    assert data.categorical_names == ("uid", "tag", "level") and data.numeric_names == ("age",)
    cat, num = data.train.categorical, data.train.numeric  # the file's rows in order
    # tag: the log's a/b (sorted: a=1, b=2), never the side table's z
    np.testing.assert_array_equal(cat[:, 1], [1, 2, 1, 2, 1, 2, 1, 2])
    # level: hi/lo by uid, uid 9 absent -> <missing> (sorted: <missing>=1, hi=2, lo=3)
    np.testing.assert_array_equal(cat[:, 2], [2, 3, 2, 2, 1, 3, 2, 2])
    ages = np.array([10, 20, 30, 10, np.nan, 20, 30, 10])
    mean, std = np.nanmean(ages), np.nanstd(ages)
    np.testing.assert_allclose(num[:, 0], np.where(np.isnan(ages), 0.0, (ages - mean) / std), atol=1e-6)
    pacsv.write_csv(pa.table({"uid": [1, 2, 1], "age": [1.0, 2.0, 3.0]}), tmp_path / "dup.csv")
    with pytest.raises(DataError, match=r"dup.csv, line 4, column 'uid': join key value '1' appears 2 times"):
        load("tabular", path=str(tmp_path / "log.parquet"), label_columns="y", joins=f"uid={tmp_path / 'dup.csv'}",
             verbose=False)


def test_min_count_sends_rare_training_values_to_the_oov_id():
    f = Factor(np.array([0, 1, 0, 2, 2, 0, 3], np.int32), np.array(["a", "b", "c", "d"]))  # a b a c c a d
    # training rows 0..5: a 3 times, b once, c twice; d unseen
    train = np.arange(6)
    mapping, size, _ = categorical_encoder(f, train, min_count=2)
    ids = mapping[f.codes]
    np.testing.assert_array_equal(ids, [1, 0, 1, 2, 2, 1, 0])  # a=1, c=2, rare b and unseen d -> 0
    assert size == 3
    mapping, size, _ = categorical_encoder(f, train, min_count=1)
    np.testing.assert_array_equal(mapping[f.codes], [1, 2, 1, 3, 3, 1, 0])
    assert size == 4


def test_min_count_default_of_the_tabular_loader(tmp_path):
    rows = ["y,k"] + [f"{i % 2},{'once' if i == 0 else 'k' + str(i % 3)}" for i in range(60)]
    (tmp_path / "k.csv").write_text("\n".join(rows) + "\n")
    path = str(tmp_path / "k.csv")
    data = load("tabular", path=path, validation_path=path, test_path=path, label_columns="y", verbose=False)
    assert data.vocab_sizes == (4,)  # k0, k1, k2 and the OOV id; 'once' (1 row) shares the OOV id
    assert data.info["min_count"] == 2


def _reviews(tmp_path, n=300):
    rng = np.random.default_rng(0)
    words = np.array("great poor fine broke quickly works love hate size colour fits cheap value".split())
    review = [" ".join(rng.choice(words, 12)) for _ in range(n)]
    pacsv.write_csv(pa.table({"rating_high": rng.integers(0, 2, n), "review": review,
                              "order_id": [f"ord-{i:06d}" for i in range(n)],
                              "brand": [f"b{i % 5}" for i in range(n)], "price": rng.uniform(1, 9, n)}),
                    tmp_path / "reviews.csv")  # fmt: skip
    return str(tmp_path / "reviews.csv")


def test_free_text_and_row_id_columns_are_dropped_with_a_note(tmp_path, capsys):
    path = _reviews(tmp_path)
    data = load("tabular", path=path, label_columns="rating_high")
    out = capsys.readouterr().out
    assert data.categorical_names == ("brand",) and data.numeric_names == ("price",)
    assert set(data.info["text_columns_dropped"]) == {"review", "order_id"}
    assert re.search(r"^review +dropped +looks like free text +300 distinct values in 300 rows", out, re.M)
    assert re.search(r"^order_id +dropped +looks like free text", out, re.M)
    assert "look like free text or row ids: review, order_id" in out and "categorical_columns" in out
    kept = load("tabular", path=path, label_columns="rating_high", categorical_columns="review", verbose=False)
    assert kept.categorical_names == ("review", "brand")
    assert set(kept.info["text_columns_dropped"]) == {"order_id"}


def test_label_transform_is_applied_before_standardisation_and_undone_for_metrics(tmp_path):
    ms = np.array([0, 1000, 3000, 898000, 4600, 12000, 500, 70000] * 5, np.float64)
    pq.write_table(pa.table({"click": np.arange(40) % 2, "t": ms.astype(np.int64), "x": np.arange(40.0)}),
                   tmp_path / "w.parquet")  # fmt: skip
    data = load("tabular", path=str(tmp_path / "w.parquet"), label_columns="click,t", regression_columns="t",
                label_transforms="t:log1p_seconds_from_ms", validation_path=str(tmp_path / "w.parquet"),
                test_path=str(tmp_path / "w.parquet"), verbose=False)  # fmt: skip
    task = data.tasks[1]
    z = np.log1p(ms / 1000)
    assert task.label_transform == "log1p_seconds_from_ms"
    np.testing.assert_allclose([task.label_mean, task.label_std], [z.mean(), z.std()], rtol=1e-9)
    np.testing.assert_allclose(data.train.labels[:, 1], (z - z.mean()) / z.std(), rtol=1e-5, atol=1e-6)
    seconds = original_units(data.tasks, data.train.labels)
    np.testing.assert_allclose(seconds[:, 1], ms / 1000, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(seconds[:, 0], np.arange(40) % 2)  # binary tasks unchanged
    with pytest.raises(ValueError, match="needs a regression task"):
        TaskSpec("click", "binary", label_transform="log1p")
    pq.write_table(pa.table({"y": [0, 1, 0], "t": [5.0, -2.0, 1.0], "x": [1.0, 2.0, 3.0]}), tmp_path / "neg.parquet")
    with pytest.raises(DataError, match=r"neg.parquet, line 2, column 't': label value '-2' is negative"):
        load("tabular", path=str(tmp_path / "neg.parquet"), label_columns="y,t", regression_columns="t",
             label_transforms="t:log1p", validation_path=str(tmp_path / "neg.parquet"),
             test_path=str(tmp_path / "neg.parquet"), allow_single_class=True, verbose=False)
