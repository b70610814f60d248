"""Census-Income (KDD): the real test file through the fast loader, the TFDS builder on a subset."""

import gzip

import numpy as np
import pytest

from mtl.data import DataError, load
from mtl.data import census_income as census
from mtl.data import census_income as census_format


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("census_cache")


@pytest.fixture(scope="module")
def group1(data_dir, cache):
    return load("census_income", data_dir=data_dir, task_group=1, cache_dir=cache)


@pytest.fixture(scope="module")
def raw_test(data_dir):
    return census_format.read_census_file(census.find_census_files(data_dir)[2])


@pytest.fixture(scope="module")
def group2(data_dir, cache):
    return load("census_income", data_dir=data_dir, task_group=2, cache_dir=cache)


def _write_subset(folder, source, num_lines, name=census_format.TEST_FILE + ".gz", start=0):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(source, "rt", encoding="latin-1") as f:
        lines = f.read().splitlines()[start : start + num_lines]
    with gzip.open(folder / name, "wt", encoding="latin-1") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def test_test_split_sizes_and_protocol(group1):
    assert {k: len(v) for k, v in group1.splits().items()} == {"train": 49_881, "validation": 24_940, "test": 24_941}
    assert group1.info["protocol"] == "test_split"
    assert group1.info["dataset"] == "census_income_kdd"
    assert group1.task_names == ("income", "never_married")
    assert group1.task_kinds == ("binary", "binary")


def test_test_split_is_the_reference_permutation(group1, raw_test):
    frame = raw_test
    perm = np.random.default_rng(0).permutation(99_762)
    income = (frame.categorical["income_50k"].strings() == "50000+.").astype(np.float32)
    np.testing.assert_array_equal(group1.train.labels[:, 0], income[perm[:49_881]])
    np.testing.assert_array_equal(group1.validation.labels[:, 0], income[perm[49_881:74_821]])
    np.testing.assert_array_equal(group1.test.labels[:, 0], income[perm[74_821:]])


# Education values (column 4 of census-income.test) at or above college entry, written out
# here independently of the loader's constant.
COLLEGE_VALUES = [
    "Some college but no degree",
    "Associates degree-occup /vocational",
    "Associates degree-academic program",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
]


def test_label_counts(group1, group2):
    totals = sum(s.labels.sum(axis=0) for s in group1.splits().values())
    assert totals.tolist() == [6_186, 43_143]
    totals2 = sum(s.labels.sum(axis=0) for s in group2.splits().values())
    assert totals2[1] == 43_143
    for split in group1.splits().values():
        assert set(np.unique(split.labels)) == {0.0, 1.0}


def test_college_label_counts_exactly(data_dir, group2):
    """education >= college, counted straight from the raw file, split by split."""
    with gzip.open(data_dir / "census_income_kdd" / "census-income.test.gz", "rt", encoding="latin-1") as f:
        education = np.array([line.split(",")[4].strip() for line in f if line.strip()])
    assert len(education) == 99_762
    college = np.isin(education, COLLEGE_VALUES)
    associates = np.char.startswith(education, "Associates degree")
    assert 0 < associates.sum() < college.sum()  # the associate degrees are there, and they count
    perm = np.random.default_rng(0).permutation(99_762)
    expected = {"train": perm[:49_881], "validation": perm[49_881:74_821], "test": perm[74_821:]}
    for name, rows in expected.items():
        got = getattr(group2, name).labels[:, 0]
        assert int(got.sum()) == int(college[rows].sum()), name
        np.testing.assert_array_equal(got, college[rows].astype(np.float32))


def test_features_exclude_labels_and_instance_weight(group1, group2):
    assert len(group1.categorical_names) == 31 and len(group1.numeric_names) == 8
    assert len(group2.categorical_names) == 30 and len(group2.numeric_names) == 8
    assert group1.numeric_names == (
        "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp", "weeks_worked", "year",
    )  # fmt: skip
    for data, banned in ((group1, {"instance_weight", "income_50k", "marital_stat"}),
                         (group2, {"instance_weight", "income_50k", "marital_stat", "education"})):  # fmt: skip
        names = set(data.categorical_names) | set(data.numeric_names)
        assert not names & banned
        assert len(names) == 39 - (data is group2)
        assert data.vocab_sizes and all(v >= 2 for v in data.vocab_sizes)
        # no feature column, and no single category of a categorical column, reproduces a label
        train = data.train
        for t in range(train.labels.shape[1]):
            y = train.labels[:, t] == 1
            for j in range(train.numeric.shape[1]):
                assert not np.array_equal(train.numeric[:, j], train.labels[:, t])
            for j in range(train.categorical.shape[1]):
                col = train.categorical[:, j]
                for v in np.unique(col):
                    assert not np.array_equal(col == v, y), (data.categorical_names[j], v)


def test_training_statistics(group1):
    train = group1.train
    np.testing.assert_allclose(train.numeric.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.numeric.std(axis=0), 1.0, atol=1e-3)
    # vocabulary from train only: id 0 (out of vocabulary) never occurs in train
    assert (train.categorical > 0).all()
    assert (train.categorical < np.array(group1.vocab_sizes)).all()
    assert group1.info["oov_index"] == 0


def test_splits_disjoint_and_deterministic(data_dir, cache, group1, raw_test):
    again = load("census_income", data_dir=data_dir / "census_income_kdd", task_group=1, seed=5, cache_dir=cache)
    for name in ("train", "validation", "test"):  # test_split ignores the seed: fixed permutation
        np.testing.assert_array_equal(getattr(again, name).categorical, getattr(group1, name).categorical)
    assert again.info["seed"] == 5 and group1.info["seed"] == 0
    # each split holds exactly its rows of the file: ages (standardised back) follow the permutation
    perm = np.random.default_rng(0).permutation(raw_test.num_rows)
    age = raw_test.numeric["age"]
    mean, std = group1.info["numeric_train_mean_std"]["age"]
    for name, rows in zip(("train", "validation", "test"), np.split(perm, [49_881, 74_821])):
        back = getattr(group1, name).numeric[:, 0] * std + mean
        np.testing.assert_allclose(back, age[rows], atol=1e-3)


def test_paper_protocol_on_a_subset(tmp_path, data_dir):
    source = data_dir / "census_income_kdd" / "census-income.test.gz"
    _write_subset(tmp_path / "census", source, 3_000, name=census_format.TRAIN_FILE + ".gz", start=10_000)
    _write_subset(tmp_path / "census", source, 2_000)
    kwargs = dict(data_dir=tmp_path / "census", cache_dir=tmp_path / "cache", check_row_counts=False)
    data = load("census_income", **kwargs, seed=1)
    assert data.info["protocol"] == "paper"
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 3_000, "validation": 1_000, "test": 1_000}
    other = load("census_income", **kwargs, seed=2)
    np.testing.assert_array_equal(other.train.categorical, data.train.categorical)
    assert not np.array_equal(other.validation.categorical, data.validation.categorical)
    forced = load("census_income", **kwargs, protocol="test_split")
    assert forced.info["protocol"] == "test_split" and len(forced.train) == 1_000
    with pytest.raises(DataError, match="census-income.test.gz: has 2000 rows, the UCI file has 99,762"):
        load("census_income", data_dir=tmp_path / "census", cache_dir=tmp_path / "cache")


def test_paper_protocol_needs_the_train_file(data_dir, cache):
    with pytest.raises(DataError, match="protocol='paper' needs the train file census-income.data"):
        load("census_income", data_dir=data_dir, protocol="paper", cache_dir=cache)


def test_missing_data_dir_says_how_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.delenv("MTL_DATA_DIR", raising=False)
    with pytest.raises(DataError, match=r"MTL_DATA_DIR.*census-income.test.gz"):
        load("census_income")
    with pytest.raises(DataError, match="census_income_kdd"):
        load("census_income", data_dir=tmp_path)
    monkeypatch.setenv("MTL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"\$MTL_DATA_DIR=.*nowhere is not a folder"):
        load("census_income")


def test_bad_rows_are_named(tmp_path):
    good = " 73, Not in universe" + ", x" * 39 + ", - 50000."
    assert len(good.split(",")) == 42
    path = tmp_path / "census-income.test"
    path.write_text(good.replace(" x", " 1.5") + "\n" + good + ", extra\n")
    with pytest.raises(DataError, match=r"census-income.test, line 2: has 43 comma-separated fields, expected 42"):
        census_format.read_census_file(path)
    fields = good.split(",")
    fields[0] = " seventy"
    path.write_text(",".join(fields) + "\n")
    with pytest.raises(DataError, match=r"line 1, column 'age': value ' seventy' is not a number"):
        census_format.read_census_file(path)
    rows = [good] * 5000  # a number Python's float() reads but pyarrow does not, far into the file
    rows[4321] = good.replace(" 73,", " 1_0,", 1)
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 4322, column 'age': value ' 1_0' is not a number"):
        census_format.read_census_file(path)


def test_bad_income_label_is_named(tmp_path, data_dir):
    lines = _write_subset(tmp_path, data_dir / "census_income_kdd" / "census-income.test.gz", 50)
    lines[7] = lines[7].replace("- 50000.", "- 5000O.")
    with gzip.open(tmp_path / "census-income.test.gz", "wt", encoding="latin-1") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 8, column 'income_50k': income value '- 5000O.'"):
        load("census_income", data_dir=tmp_path, cache_dir=tmp_path / "cache", check_row_counts=False)


def test_tfds_builder_round_trip(tmp_path, data_dir):
    """download_and_prepare (array_record, no TensorFlow) from a manual folder, read back via data source."""
    pytest.importorskip("array_record")
    from mtl.data.builders.census_income_kdd import CensusIncomeKdd
    from mtl.data.builders.columnar import prepare, read_frame

    manual = tmp_path / "manual"
    lines = _write_subset(manual, data_dir / "census_income_kdd" / "census-income.test.gz", 2_000)
    builder = prepare(CensusIncomeKdd, data_dir=tmp_path / "tfds", manual_dir=manual)
    assert list(builder.info.splits) == ["test"]
    assert builder.info.splits["test"].num_examples == 2_000
    source = builder.as_data_source("test")
    assert len(source) == 2_000
    record = source[0]
    row = int(record["row"])
    raw = [v.strip() for v in lines[row].split(",")]
    assert int(record["line"]) == row + 1
    cat = [v.decode() for v in record["categorical"]]
    assert cat == [raw[j] for j in range(42) if j not in census_format.RAW_NUMERIC]
    np.testing.assert_allclose(record["numeric"], [float(raw[j]) for j in census_format.RAW_NUMERIC], rtol=1e-6)
    frame = read_frame(builder, "test")
    direct = census_format.read_census_file(manual / "census-income.test.gz")
    assert frame.num_rows == direct.num_rows == 2_000
    for name in direct.categorical:
        np.testing.assert_array_equal(frame.categorical[name].strings(), direct.categorical[name].strings())
    for name in direct.numeric:
        np.testing.assert_array_equal(frame.numeric[name], direct.numeric[name])


def test_test_file_content_checksum(data_dir, caplog):
    import gzip
    import logging

    from mtl.data.census_income import check_test_content

    raw = gzip.decompress((data_dir / "census_income_kdd" / "census-income.test.gz").read_bytes())
    assert check_test_content(raw, "census-income.test.gz")
    with caplog.at_level(logging.WARNING):
        assert not check_test_content(raw[:-10], "cut.gz")
    assert "differs from UCI" in caplog.text and "cut.gz" in caplog.text
