"""The generic tabular loader: real sample files it was not written for, and every bad input."""

import gzip
import pathlib
import zlib

import numpy as np
import pytest

from mtl.data import DataError, load
from mtl.data.reader import Column, read_columns, read_header
from mtl.data.tabular import infer_column_type


def write(path, text):
    path.write_text(text)
    return str(path)


def small_csv(tmp_path, n=60, name="data.csv", delimiter=",", seed=0):
    """A clean file: two binary labels, a regression label, a categorical, two numeric columns."""
    rng = np.random.default_rng(seed)
    header = ["click", "buy", "dwell", "city", "price", "age"]
    rows = [delimiter.join(header)]
    for i in range(n):
        click = i % 2
        rows.append(delimiter.join(map(str, [click, (i % 4 == 1) * 1, round(rng.normal(), 3), f"c{i % 5}",
                                             round(rng.uniform(0, 100), 2), 20 + i])))  # fmt: skip
    return write(tmp_path / name, "\n".join(rows) + "\n")


# ---------------------------------------------------------------- real samples


def test_ali_ccp_torch_rechub_samples(data_dir, capsys):
    d = data_dir / "ali_ccp" / "torch_rechub_samples"
    data = load(
        "tabular",
        path=str(d / "ali_ccp_train_sample.csv"),
        validation_path=str(d / "ali_ccp_val_sample.csv"),
        test_path=str(d / "ali_ccp_test_sample.csv"),
        label_columns="click,purchase",
    )
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 100, "validation": 50, "test": 50}
    assert data.task_names == ("click", "purchase")
    assert data.train.labels.sum(axis=0).tolist() == [7, 1]
    assert "D508" in data.numeric_names and "101" in data.categorical_names
    assert data.info["protocol"] == "files"
    out = capsys.readouterr().out
    assert "column" in out and "inferred" in out and "D853" in out and "label (binary)" in out


def test_ali_ccp_forced_types(data_dir):
    d = data_dir / "ali_ccp" / "torch_rechub_samples"
    sparse = "101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,109_14,110_14,127_14,150_14"
    data = load(
        "tabular",
        path=str(d / "ali_ccp_train_sample.csv"),
        validation_path=str(d / "ali_ccp_val_sample.csv"),
        test_path=str(d / "ali_ccp_test_sample.csv"),
        label_columns=["click", "purchase"],
        categorical_columns=sparse,
        verbose=False,
    )
    assert len(data.categorical_names) == 23 and len(data.numeric_names) == 8


def test_aliexpress_samples(data_dir):
    d = data_dir / "aliexpress"
    data = load(
        "tabular",
        path=str(d / "aliexpress_train_sample.csv"),
        test_path=str(d / "aliexpress_test_sample.csv"),
        label_columns="click,conversion",
        drop_columns="search_id",
        split="0.7,0.3,0",
        verbose=False,
    )
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 70, "validation": 30, "test": 20}
    names = set(data.categorical_names) | set(data.numeric_names)
    assert len(names) == 79 and not names & {"search_id", "click", "conversion"}


def test_kuairand_sample_with_regression_label(data_dir):
    data = load(
        "tabular",
        path=str(data_dir / "kuairand_sample" / "kuairand_sample.csv"),
        label_columns="is_click,play_time_ms",
        regression_columns="play_time_ms",
        drop_columns="user_id,video_id",
        categorical_columns="tab",
        verbose=False,
    )
    assert data.task_kinds == ("binary", "regression")
    assert sum(len(s) for s in data.splits().values()) == 200
    assert sum(s.labels[:, 0].sum() for s in data.splits().values()) == 32
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 160, "validation": 20, "test": 20}


def test_census_preprocessed_samples(data_dir):
    d = data_dir / "census_income_kdd" / "torch_rechub_preprocessed_samples"
    data = load(
        "tabular",
        path=str(d / "census_income_train_sample.csv"),
        validation_path=str(d / "census_income_val_sample.csv"),
        test_path=str(d / "census_income_test_sample.csv"),
        label_columns="income,marital status",
        verbose=False,
    )
    assert len(data.train) == 80 and len(data.categorical_names) + len(data.numeric_names) == 39


def test_tiny_sample_single_class_is_a_clear_error(data_dir):
    d = data_dir / "ali_ccp" / "torch_rechub_samples"
    with pytest.raises(DataError) as e:
        load("tabular", path=str(d / "ali_ccp_train_sample.csv"), label_columns="click,purchase", verbose=False)
    msg = str(e.value)
    assert "single class for binary task 'click'" in msg or "single class for binary task 'purchase'" in msg
    assert "split 'validation'" in msg or "split 'test'" in msg
    assert "ali_ccp_train_sample.csv" in msg
    data = load(
        "tabular", path=str(d / "ali_ccp_train_sample.csv"), label_columns="click,purchase",
        allow_single_class=True, verbose=False,
    )  # fmt: skip
    assert len(data.train) == 80


# ---------------------------------------------------------------- behaviour


def test_split_sizes_disjoint_and_deterministic(tmp_path):
    path = small_csv(tmp_path, n=200)
    a = load("tabular", path=path, label_columns="click,buy", seed=3, verbose=False)
    b = load("tabular", path=path, label_columns="click,buy", seed=3, verbose=False)
    c = load("tabular", path=path, label_columns="click,buy", seed=4, verbose=False)
    assert {k: len(v) for k, v in a.splits().items()} == {"train": 160, "validation": 20, "test": 20}
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(a, name).numeric, getattr(b, name).numeric)
    assert not np.array_equal(a.test.numeric, c.test.numeric)
    ages = [np.round(s.numeric[:, a.numeric_names.index("age")], 4) for s in a.splits().values()]
    assert sum(len(x) for x in ages) == len(np.unique(np.concatenate(ages))) == 200  # age is unique per row


def test_features_exclude_labels_and_dropped_columns(tmp_path):
    path = small_csv(tmp_path, n=80)
    data = load("tabular", path=path, label_columns="click,dwell", regression_columns="dwell",
                drop_columns="buy", verbose=False)  # fmt: skip
    assert data.task_kinds == ("binary", "regression")
    assert set(data.categorical_names) == {"city"} and set(data.numeric_names) == {"price", "age"}
    assert data.info["column_types"] == {"city": "categorical", "price": "numeric", "age": "numeric"}


def test_vocabulary_from_train_only_and_oov_bucket(tmp_path):
    lines = ["y,color,x"] + [f"{i % 2},{'red' if i % 3 else 'blue'},{i}" for i in range(40)]
    train = write(tmp_path / "train.csv", "\n".join(lines) + "\n")
    val = write(tmp_path / "val.csv", "y,color,x\n0,red,1\n1,green,2\n")
    test = write(tmp_path / "test.csv", "y,color,x\n0,blue,1\n1,,2\n")
    data = load("tabular", path=train, validation_path=val, test_path=test, label_columns="y",
                categorical_columns="color", numeric_columns="x", verbose=False)  # fmt: skip
    assert data.vocab_sizes == (3,)  # OOV + blue + red
    assert data.validation.categorical[:, 0].tolist() == [2, 0]  # red, green -> OOV 0
    assert data.test.categorical[:, 0].tolist() == [1, 0]  # blue, missing (unseen in train) -> 0
    np.testing.assert_allclose(data.train.numeric.mean(), 0.0, atol=1e-6)
    expected = (np.array([1, 2]) - 19.5) / np.arange(40).std()
    np.testing.assert_allclose(data.validation.numeric[:, 0], expected, rtol=1e-5)


def test_missing_values(tmp_path):
    rows = ["y,num,cat"]
    for i in range(30):
        num = ["", "NA", "nan", "?"][i % 4] if i % 5 == 0 else str(i * 1.5)
        cat = ["", "NA", "?"][i % 3] if i % 7 == 0 else f"k{i % 3}"
        rows.append(f"{i % 2},{num},{cat}")
    path = write(tmp_path / "m.csv", "\n".join(rows) + "\n")
    other = write(tmp_path / "other.csv", "y,num,cat\n0,1,k1\n1,2,k2\n")
    data = load("tabular", path=path, validation_path=other, test_path=other, label_columns="y",
                missing_indicators=True, verbose=False)  # fmt: skip
    assert data.numeric_names == ("num", "num:missing")
    missing = data.train.numeric[:, 1] == 1
    assert missing.sum() == 6
    np.testing.assert_allclose(data.train.numeric[missing, 0], 0.0, atol=1e-6)  # mean-filled, then scaled
    assert data.vocab_sizes == (5,)  # OOV + k0 k1 k2 + <missing>


def test_hash_buckets(tmp_path):
    """Hashed ids are exactly CRC32(value) mod buckets, in split order, and spread over the buckets."""
    rows = ["y,user,x"] + [f"{i % 2},u{i},{i % 7}.5" for i in range(100)]
    path = write(tmp_path / "h.csv", "\n".join(rows) + "\n")
    data = load("tabular", path=path, label_columns="y", categorical_columns="user", hash_buckets=16,
                cache_dir=str(tmp_path / "c"), verbose=False)  # fmt: skip
    assert data.vocab_sizes == (16,)
    assert data.info["hashed_columns"]["user"] == "hashed (80 train values > 16)"
    perm = np.random.default_rng(0).permutation(100)  # the documented split: cut at 80% and 90%
    ids = np.array([zlib.crc32(f"u{i}".encode()) % 16 for i in range(100)])
    for name, rows in zip(("train", "validation", "test"), np.split(perm, [80, 90])):
        np.testing.assert_array_equal(getattr(data, name).categorical[:, 0], ids[rows])
    used = np.unique(np.concatenate([s.categorical[:, 0] for s in data.splits().values()]))
    assert len(used) == len(np.unique(ids)) == 16  # 100 values reach every bucket
    assert zlib.crc32(b"u0") == 893956064 and ids[0] == 0  # the hash itself, pinned


def test_delimiters_detected(tmp_path):
    for delimiter in ("\t", ";", "|"):
        path = small_csv(tmp_path, n=40, name=f"d{ord(delimiter)}.txt", delimiter=delimiter)
        header = read_header(path)
        assert header.delimiter == delimiter and header.names[:2] == ["click", "buy"]
        data = load("tabular", path=path, label_columns="click", split="0.5,0.25,0.25", verbose=False)
        assert len(data.train) == 20


def test_quoted_fields_and_line_numbers(tmp_path):
    """A row's line when every record is one line (blank lines at the end allowed); else its record number."""
    text = 'y,name,x\n0,"a, b",1\n1,"multi\nline",2\n\n0,c,oops\n'
    path = write(tmp_path / "q.csv", text)
    table = read_columns(read_header(path), {"name": Column("factor")})
    assert table.categorical["name"].strings().tolist() == ["a, b", "multi\nline", "c"]
    assert table.lines.tolist() == [-1, -2, -3]  # a record spans two lines, a blank line: records
    with pytest.raises(DataError, match=r"q.csv, record 3 after the header, column 'x': value 'oops' in numeric"):
        load("tabular", path=path, label_columns="y", numeric_columns="x", verbose=False)
    path = write(tmp_path / "one.csv", '\ny,name,x\r\n0,"a, b",1\r\n1,b,2\r0,c,oops\n \n\n')
    assert read_columns(read_header(path), {"name": Column("factor")}).lines.tolist() == [3, 4, 5]
    with pytest.raises(DataError, match=r"one.csv, line 5, column 'x': value 'oops' in numeric"):
        load("tabular", path=path, label_columns="y", numeric_columns="x", verbose=False)


def test_type_inference_rules():
    assert infer_column_type(np.array(["1", "2", "3"]), max_categorical_distinct=50)[0] == "categorical"
    assert infer_column_type(np.array(["1.5", "2", ""]), max_categorical_distinct=50)[0] == "numeric"
    assert infer_column_type(np.array([str(i) for i in range(60)]), max_categorical_distinct=50)[0] == "numeric"
    assert infer_column_type(np.array(["a", "1"]), max_categorical_distinct=50)[0] == "categorical"
    assert infer_column_type(np.array(["", "NA"]), max_categorical_distinct=50)[0] == "categorical"


def test_hundred_thousand_rows(tmp_path):
    rng = np.random.default_rng(0)
    n = 100_000
    cols = [rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 30, n), rng.normal(size=n).round(3)]
    body = "\n".join(f"{a},{b},k{c},{d}" for a, b, c, d in zip(*cols))
    path = write(tmp_path / "big.csv", "y1,y2,cat,num\n" + body + "\n")
    data = load("tabular", path=path, label_columns="y1,y2", verbose=False)
    assert len(data.train) == 80_000 and data.vocab_sizes == (31,)


# ---------------------------------------------------------------- bad input: file, column and line named


def test_error_missing_label_column_lists_columns(tmp_path):
    path = small_csv(tmp_path)
    with pytest.raises(DataError) as e:
        load("tabular", path=path, label_columns="click,purchase", verbose=False)
    msg = str(e.value)
    assert "data.csv" in msg and "['purchase']" in msg
    assert "available columns: click, buy, dwell, city, price, age" in msg


def test_error_label_outside_zero_one(tmp_path):
    path = write(tmp_path / "l.csv", "y,x\n0,1\n1,2\n2,3\n1,4\n")
    with pytest.raises(DataError) as e:
        load("tabular", path=path, label_columns="y", verbose=False)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "l.csv") + ", line 4, column 'y': label value '2' is not 0 or 1")
    assert "regression_columns" in msg
    path = write(tmp_path / "l2.csv", "y,x\n0,1\nyes,2\n")
    with pytest.raises(DataError, match=r"l2.csv, line 3, column 'y': label value 'yes' is not a number"):
        load("tabular", path=path, label_columns="y", verbose=False)
    path = write(tmp_path / "l3.csv", "y,x\n0,1\n,2\n")
    with pytest.raises(DataError, match=r"l3.csv, line 3, column 'y': label value is missing"):
        load("tabular", path=path, label_columns="y", verbose=False)


def test_error_non_numeric_in_numeric_column(tmp_path):
    path = small_csv(tmp_path, n=20)
    lines = pathlib.Path(path).read_text().splitlines()
    fields = lines[9].split(",")
    fields[4] = "12,5".replace(",", "_")
    lines[9] = ",".join(fields)
    write(tmp_path / "data.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load("tabular", path=path, label_columns="click", numeric_columns="price", verbose=False)
    assert str(e.value) == f"{path}, line 10, column 'price': value '12_5' in numeric column is not a number"
    lines[9] = lines[9].replace("12_5", "abc")
    write(tmp_path / "data.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"data.csv, line 10, column 'price': value 'abc' in numeric column"):
        load("tabular", path=path, label_columns="click", numeric_columns="price", verbose=False)
    # without numeric_columns the column is inferred categorical: no error, and the table says why
    data = load("tabular", path=path, label_columns="click", allow_single_class=True, verbose=False)
    assert data.info["column_types"]["price"] == "categorical"


def test_error_empty_file_and_header_only(tmp_path):
    with pytest.raises(DataError, match=r"empty.csv: file is empty"):
        load("tabular", path=write(tmp_path / "empty.csv", ""), label_columns="y")
    with pytest.raises(DataError, match=r"blank.csv: file is empty"):
        load("tabular", path=write(tmp_path / "blank.csv", "\n  \n"), label_columns="y")
    with pytest.raises(DataError, match=r"header.csv: has a header but no data rows"):
        load("tabular", path=write(tmp_path / "header.csv", "y,x\n"), label_columns="y")
    with pytest.raises(DataError, match=r"nothere.csv: file not found"):
        load("tabular", path=str(tmp_path / "nothere.csv"), label_columns="y")


def test_error_single_class_names_split_and_task(tmp_path):
    rows = ["y,z,x"] + [f"{i % 2},0,{i}" for i in range(20)]
    path = write(tmp_path / "one.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataError) as e:
        load("tabular", path=path, label_columns="y,z", verbose=False)
    msg = str(e.value)
    assert "split 'train'" in msg and "binary task 'z'" in msg and "every label is 0" in msg and "one.csv" in msg


def test_error_wrong_delimiter(tmp_path):
    path = small_csv(tmp_path, n=10, name="semi.csv", delimiter=";")
    with pytest.raises(DataError) as e:
        load("tabular", path=path, label_columns="click", delimiter=",")
    msg = str(e.value)
    assert "semi.csv, line 1" in msg and "single column" in msg and "looks ';' (semicolon)-delimited" in msg
    assert "delimiter=';'" in msg
    path = write(tmp_path / "one_col.csv", "y\n0\n1\n")
    with pytest.raises(DataError, match=r"one_col.csv, line 1: cannot detect the delimiter"):
        load("tabular", path=path, label_columns="y")


def test_error_wrong_number_of_fields(tmp_path):
    path = write(tmp_path / "ragged.csv", "y,a,b\n0,1,2\n1,1,2\n0,1\n1,1,2\n")
    with pytest.raises(DataError) as e:
        load("tabular", path=path, label_columns="y")
    assert str(e.value) == f"{path}, line 4: has 2 fields, the header has 3 (delimiter ',' (comma))"
    path = write(tmp_path / "ragged2.csv", 'y,a,b\n0,"x",2\n1,1,2,9\n')
    with pytest.raises(DataError, match=r"ragged2.csv, line 3: has 4 fields, the header has 3"):
        load("tabular", path=path, label_columns="y")


def test_error_unknown_and_conflicting_columns(tmp_path):
    path = small_csv(tmp_path)
    with pytest.raises(DataError, match=r"drop_columns \['nope'\] not in the header; available columns: click"):
        load("tabular", path=path, label_columns="click", drop_columns="nope")
    with pytest.raises(DataError, match=r"regression_columns \['price'\] are not among label_columns"):
        load("tabular", path=path, label_columns="click", regression_columns="price")
    with pytest.raises(DataError, match=r"categorical_columns \['click'\] are label columns"):
        load("tabular", path=path, label_columns="click", categorical_columns="click")
    other = write(tmp_path / "other.csv", "click,buy\n0,1\n")
    with pytest.raises(DataError, match=r"other.csv, line 1: columns differ from .*data.csv: missing \['age'"):
        load("tabular", path=path, label_columns="click", test_path=other)
    dup = write(tmp_path / "dup.csv", "y,a,a\n0,1,2\n")
    with pytest.raises(DataError, match=r"dup.csv, line 1: header repeats column names \['a'\]"):
        load("tabular", path=dup, label_columns="y")


def test_error_unset_config_values():
    with pytest.raises(DataError, match=r"no data file given; pass path=FILE .*--config.data.path=FILE"):
        load("tabular", path="", label_columns="")
    with pytest.raises(DataError, match=r"no label columns given.*--config.data.label_columns=a,b"):
        load("tabular", path="x.csv", label_columns="")


def test_error_bad_split(tmp_path):
    path = small_csv(tmp_path)
    with pytest.raises(DataError, match=r"split must be 3 non-negative fractions summing to 1"):
        load("tabular", path=path, label_columns="click", split="0.8,0.3,0.1")


def test_gzip_is_not_silently_misread(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("y,x\n0,1\n")
    with pytest.raises(DataError, match=r"data.csv.gz: is gzip-compressed; decompress it first"):
        load("tabular", path=str(path), label_columns="y")


# ---------------------------------------------------------------- regression labels and users


def test_regression_labels_standardised_with_training_statistics(data_dir, tmp_path):
    kwargs = dict(path=str(data_dir / "kuairand_sample" / "kuairand_sample.csv"), label_columns="is_click,play_time_ms",
                  regression_columns="play_time_ms", drop_columns="user_id,video_id", categorical_columns="tab",
                  cache_dir=str(tmp_path / "c"), verbose=False)  # fmt: skip
    raw = load("tabular", standardize_labels=False, **kwargs)
    data = load("tabular", **kwargs)  # the default
    click, play = data.tasks
    assert (click.label_mean, click.label_std) == (0.0, 1.0) and not click.standardized
    train = raw.train.labels[:, 1].astype(np.float64)
    assert play.label_mean == pytest.approx(train.mean(), rel=1e-6)
    assert play.label_std == pytest.approx(train.std(), rel=1e-6) and play.label_std > 1000  # milliseconds
    assert data.info["label_standardization"] == {"play_time_ms": [play.label_mean, play.label_std]}
    np.testing.assert_allclose(data.train.labels[:, 1].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.train.labels[:, 1].std(), 1.0, atol=1e-5)
    for name in ("train", "validation", "test"):
        a, b = getattr(raw, name), getattr(data, name)
        np.testing.assert_array_equal(a.labels[:, 0], b.labels[:, 0])  # binary labels untouched
        np.testing.assert_array_equal(a.numeric, b.numeric)
        np.testing.assert_allclose(play.to_original_units(b.labels[:, 1].astype(np.float64)), a.labels[:, 1],
                                   rtol=1e-5)  # fmt: skip
    assert raw.tasks[1].label_std == 1.0 and "label_standardization" not in raw.info


def test_synthetic_keeps_raw_labels_unless_asked():
    raw = load("synthetic", num_train=500, num_validation=100, num_test=100)
    assert all(not t.standardized for t in raw.tasks)
    scaled = load("synthetic", num_train=500, num_validation=100, num_test=100, standardize_labels=True)
    np.testing.assert_allclose(scaled.train.labels.mean(axis=0), 0.0, atol=1e-5)
    for t, task in enumerate(scaled.tasks):
        np.testing.assert_allclose(task.to_original_units(scaled.test.labels[:, t]), raw.test.labels[:, t], atol=1e-4)


def test_user_column_gives_user_codes_per_row(data_dir, tmp_path):
    path = str(data_dir / "kuairand_sample" / "kuairand_sample.csv")
    users = np.array([line.split(",")[0] for line in pathlib.Path(path).read_text().splitlines()[1:]])
    common = dict(path=path, label_columns="is_click", cache_dir=str(tmp_path / "c"), verbose=False)
    data = load("tabular", user_column="user_id", drop_columns="user_id,video_id", **common)
    assert data.info["user_column"] == "user_id" and "user_id" not in data.categorical_names + data.numeric_names
    perm = np.random.default_rng(0).permutation(200)
    codes = np.concatenate([s.users for s in data.splits().values()])
    assert codes.dtype == np.int64
    values = users[np.concatenate(np.split(perm, [160, 180]))]
    for value in np.unique(values):  # one code per user, the same in every split
        assert len(np.unique(codes[values == value])) == 1
    assert len(np.unique(codes)) == len(np.unique(users))
    for split in data.splits().values():
        assert "users" not in split.as_dict()
        picked = split.take(np.arange(3))
        np.testing.assert_array_equal(picked.users, split.users[:3])
    kept = load("tabular", user_column="user_id", drop_columns="video_id", categorical_columns="user_id", **common)
    assert "user_id" in kept.categorical_names  # not dropped: also a feature
    np.testing.assert_array_equal(kept.train.users, data.train.users)
    plain = load("tabular", drop_columns="user_id,video_id", **common)
    assert plain.train.users is None and plain.info["user_column"] is None
    with pytest.raises(DataError, match=r"user_column \['nope'\] not in the header"):
        load("tabular", user_column="nope", **common)
    with pytest.raises(DataError, match="user_column 'is_click' is a label column"):
        load("tabular", user_column="is_click", **common)
