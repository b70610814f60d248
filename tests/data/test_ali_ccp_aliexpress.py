"""Ali-CCP and AliExpress loaders and builders on the public samples."""

import shutil

import numpy as np
import pytest

from mtl.data import DataError, ali_ccp, aliexpress, load


def same(a, b):
    for name in ("train", "validation", "test"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(x.categorical, y.categorical)
        np.testing.assert_array_equal(x.numeric, y.numeric)
        np.testing.assert_array_equal(x.labels, y.labels)


# ---------------------------------------------------------------- Ali-CCP


def test_ali_ccp_torch_rechub_sample(data_dir, tmp_path):
    data = load("ali_ccp", data_dir=data_dir, sample=True, cache_dir=tmp_path)
    assert data.info["format"] == "torch_rechub" and data.info["sample"] is True
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 100, "validation": 50, "test": 50}
    assert data.task_names == ("click", "conversion")
    counts = {k: v.labels.sum(axis=0).tolist() for k, v in data.splits().items()}
    assert counts == {"train": [7, 1], "validation": [3, 1], "test": [2, 1]}
    assert data.categorical_names == ali_ccp.SPARSE_FIELDS and data.numeric_names == ali_ccp.DENSE_FIELDS


def test_ali_ccp_ctcvr_and_purchase_alias(data_dir, tmp_path):
    data = load("ali_ccp", data_dir=data_dir, sample=True, tasks="click,ctcvr,purchase", cache_dir=tmp_path)
    assert data.task_names == ("click", "ctcvr", "purchase")
    for split in data.splits().values():
        click, ctcvr, conversion = split.labels.T
        np.testing.assert_array_equal(ctcvr, click * conversion)
    with pytest.raises(DataError, match=r"unknown task 'cvr_only'; choose from \('click', 'conversion', 'ctcvr'\)"):
        load("ali_ccp", data_dir=data_dir, sample=True, tasks="click,cvr_only", cache_dir=tmp_path)


def test_ali_ccp_paddlerec_sample(data_dir, tmp_path):
    with pytest.raises(DataError, match=r"split 'validation' .* single class for binary task 'click'"):
        load("ali_ccp", data_dir=data_dir, sample=True, format="paddlerec", cache_dir=tmp_path)
    data = load("ali_ccp", data_dir=data_dir, sample=True, format="paddlerec", tasks="click,ctcvr",
                allow_single_class=True, cache_dir=tmp_path)  # fmt: skip
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 9, "validation": 1, "test": 10}
    assert data.numeric_names == tuple(f"n_{f}" for f in ali_ccp.MULTI_VALUED_FIELDS)
    assert data.test.labels.sum(axis=0).tolist() == [1, 0]  # test_small.txt: one click, no conversion
    frame = ali_ccp.read_paddlerec_file(data_dir / "ali_ccp" / "paddlerec_esmm_samples" / "train_small.txt")
    assert frame.numeric["n_210"][:3].tolist() == [3, 5, 11]
    assert frame.numeric["n_150_14"][0] == 191
    assert frame.categorical["210"].strings()[0] == "1"  # first id of field 210 on line 1
    assert frame.categorical["509"].strings()[0] == "<missing>"
    assert frame.numeric["click"][:3].tolist() == [1, 0, 1] and frame.numeric["conversion"][:3].tolist() == [1, 0, 0]


def test_ali_ccp_bad_inputs(tmp_path, data_dir, monkeypatch):
    with pytest.raises(DataError, match=r"Only the small public samples are there: pass sample=True"):
        load("ali_ccp", data_dir=data_dir, cache_dir=tmp_path)
    bad = tmp_path / "ali_ccp"
    bad.mkdir()
    (bad / "train.txt").write_text("1,0,0,101:1,210:2\n2,1,0,101:3,2104\n")
    (bad / "test.txt").write_text("1,0,0,101:1\n")
    with pytest.raises(DataError, match=r"train.txt, line 2: feature '2104' is not field_id:feature_id"):
        load("ali_ccp", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    (bad / "train.txt").write_text("1,0,0,101:1\n2,2,0,101:3\n")
    with pytest.raises(DataError, match=r"train.txt, line 2, column 'click': label value '2' is not 0 or 1"):
        load("ali_ccp", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    shutil.rmtree(bad)
    bad.mkdir()
    for name in ali_ccp.TORCH_RECHUB_FILES[False].values():
        (bad / name).write_text("click,purchase,101\n0,0,1\n")
    with pytest.raises(DataError, match=r"ali_ccp_train.csv, line 1: not a torch-rechub Ali-CCP file: columns \['121'"):
        load("ali_ccp", data_dir=tmp_path, cache_dir=tmp_path / "cache")


def same_frame(built, direct, categorical, numeric):
    """A split read back from a TFDS builder holds the direct reader's rows: text, numbers and lines."""
    assert built.lines.tolist() == direct.lines.tolist()
    for name in categorical:
        np.testing.assert_array_equal(built.categorical[name].strings(), direct.categorical[name].strings())
    for name in numeric:
        np.testing.assert_array_equal(built.numeric[name], direct.numeric[name])


def test_ali_ccp_tfds_builder_round_trip(data_dir, tmp_path):
    from mtl.data.ali_ccp import find_ali_ccp_files
    from mtl.data.builders.ali_ccp import AliCcp
    from mtl.data.builders.columnar import prepare, read_frame

    sizes = {"torch_rechub": {"train": 100, "validation": 50, "test": 50}, "paddlerec": {"train": 10, "test": 10}}
    for fmt, expected in sizes.items():
        builder = prepare(AliCcp, data_dir=tmp_path / "tfds", manual_dir=data_dir / "ali_ccp", config=fmt)
        assert {k: v.num_examples for k, v in builder.info.splits.items()} == expected
        _, files = find_ali_ccp_files(data_dir, format=fmt, sample=True)
        for split, path in files.items():
            direct = ali_ccp.READERS[fmt](path[0] if isinstance(path, list) else path)
            same_frame(read_frame(builder, split), direct, *ali_ccp.COLUMNS[fmt])
    assert len(builder.as_data_source("test")) == 10


# ---------------------------------------------------------------- AliExpress


def test_aliexpress_sample(data_dir, tmp_path):
    data = load("aliexpress", data_dir=data_dir, sample=True, cache_dir=tmp_path)
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 90, "validation": 10, "test": 20}
    assert data.categorical_names == tuple(f"categorical_{i}" for i in range(1, 17))
    assert data.numeric_names == tuple(f"numerical_{i}" for i in range(1, 64))
    assert sum(s.labels[:, 0].sum() for s in (data.train, data.validation)) == 60  # clicks in the train sample
    assert data.info["dropped_columns"] == ["search_id"]
    other_seed = load("aliexpress", data_dir=data_dir, sample=True, seed=1, allow_single_class=True, cache_dir=tmp_path)
    np.testing.assert_array_equal(other_seed.test.labels, data.test.labels)  # the test file is fixed
    assert not np.array_equal(other_seed.validation.labels, data.validation.labels)


def test_aliexpress_country_layout_and_ctcvr(data_dir, tmp_path):
    country = tmp_path / "data" / "aliexpress" / "AliExpress_ES"
    country.mkdir(parents=True)
    shutil.copy(data_dir / "aliexpress" / "aliexpress_train_sample.csv", country / "train.csv")
    shutil.copy(data_dir / "aliexpress" / "aliexpress_test_sample.csv", country / "test.csv")
    with pytest.raises(DataError, match=r"AliExpress \(NL\): no dataset files"):
        load("aliexpress", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    data = load("aliexpress", data_dir=tmp_path / "data", country="es", tasks="click,ctcvr", cache_dir=tmp_path / "c")
    assert data.info["country"] == "ES" and data.task_names == ("click", "ctcvr")
    direct = load("aliexpress", data_dir=country, country="ES", tasks="click,ctcvr", cache_dir=tmp_path / "c")
    same(data, direct)


def test_aliexpress_bad_inputs(data_dir, tmp_path):
    with pytest.raises(DataError, match=r"public sample.* there: pass sample=True"):
        load("aliexpress", data_dir=data_dir, cache_dir=tmp_path)
    folder = tmp_path / "AliExpress_NL"
    folder.mkdir()
    lines = (data_dir / "aliexpress" / "aliexpress_train_sample.csv").read_text().splitlines()
    fields = lines[5].split(",")
    fields[-1] = "3"
    lines[5] = ",".join(fields)
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(data_dir / "aliexpress" / "aliexpress_test_sample.csv", folder / "test.csv")
    with pytest.raises(DataError, match=r"train.csv, line 6, column 'conversion': label value '3' is not 0 or 1"):
        load("aliexpress", data_dir=folder, cache_dir=tmp_path / "cache")


def test_aliexpress_tfds_builder_round_trip(data_dir, tmp_path):
    from mtl.data.builders.aliexpress import AliExpress
    from mtl.data.builders.columnar import prepare, read_frame

    builder = prepare(AliExpress, data_dir=tmp_path / "tfds", manual_dir=data_dir, config="sample")  # data root
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 100, "test": 20}
    frame = read_frame(builder, "test")
    direct = aliexpress.read_aliexpress_files([data_dir / "aliexpress" / "aliexpress_test_sample.csv"])
    assert frame.lines.tolist() == list(range(2, 22))
    same_frame(frame, direct, *aliexpress.COLUMNS)


def test_ali_ccp_user_column(data_dir, tmp_path):
    common = dict(data_dir=data_dir, sample=True, cache_dir=tmp_path)
    data = load("ali_ccp", user_column="101", **common)
    assert data.info["user_column"] == "101" and "101" in data.categorical_names
    raw = {}
    for name, file in (("train", "ali_ccp_train_sample.csv"), ("validation", "ali_ccp_val_sample.csv"),
                       ("test", "ali_ccp_test_sample.csv")):  # fmt: skip
        lines = (data_dir / "ali_ccp" / "torch_rechub_samples" / file).read_text().splitlines()
        raw[name] = np.array([line.split(",")[2] for line in lines[1:]])
    values = np.concatenate(list(raw.values()))
    codes = np.concatenate([getattr(data, name).users for name in raw])
    assert len(np.unique(codes)) == len(np.unique(values))
    for value in np.unique(values):  # one code per user id, shared by all splits
        assert len(np.unique(codes[values == value])) == 1
    assert load("ali_ccp", **common).train.users is None
    paddle = load("ali_ccp", user_column="101", format="paddlerec", allow_single_class=True, **common)
    assert paddle.train.users is not None and len(paddle.test.users) == 10
    with pytest.raises(DataError, match="user_column 'uid' is not an Ali-CCP sparse field; the user id is field '101'"):
        load("ali_ccp", user_column="uid", **common)
    with pytest.raises(DataError, match="AliExpress has no user column"):
        load("aliexpress", data_dir=data_dir, sample=True, cache_dir=tmp_path, user_column="search_id")
