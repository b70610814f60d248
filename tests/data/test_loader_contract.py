"""Every dataset in mtl.data.LOADERS against the MultiTaskData contract: shapes and dtypes,
label kinds, disjoint splits (where rows can be told apart), category ids and numeric
scaling from the training split only. A new loader is covered by adding one entry to CASES
(how to load a small instance of it, and what can be checked about its rows)."""

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

import mtl.data as md


@dataclasses.dataclass(frozen=True)
class Case:
    load: Callable  # (data_dir, tmp_path) -> MultiTaskData
    needs_shared_data: bool = False
    rows_are_unique: bool = False  # every row is distinct (continuous features): disjointness is checkable
    not_checkable: str = "rows cannot be told apart (duplicates are legitimate)"  # why disjointness is not checked


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _tabular_files(tmp):
    """A training file and separate validation/test files; 'violet' occurs only in the test file,
    'x' is a unique float per row (rows can be told apart), 'uid' an integer id."""
    rng = np.random.default_rng(0)
    colors = ["red", "blue", "green"]

    def rows(ids, extra_color=None):
        out = ["click,buy,dwell,color,x,uid"]
        for i in ids:
            color = extra_color if extra_color and i % 5 == 0 else colors[i % 3]
            out.append(f"{i % 2},{(i // 2) % 2},{rng.normal() * 30 + 200:.3f},{color},{rng.normal() * 7 + 3:.6f},{i}")
        return out

    return (_write(tmp / "train.csv", rows(range(0, 120))), _write(tmp / "val.csv", rows(range(120, 150))),
            _write(tmp / "test.csv", rows(range(150, 180), extra_color="violet")))


def _tabular(data_dir, tmp):
    train, val, test = _tabular_files(tmp)
    return md.load("tabular", path=train, validation_path=val, test_path=test, label_columns="click,buy,dwell",
                   regression_columns="dwell", categorical_columns="color", numeric_columns="x,uid",
                   cache_dir=tmp / "cache", verbose=False)


def _tabular_parquet(data_dir, tmp):
    """The same files as Parquet (typed columns, read through the same reader)."""
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    paths = []
    for csv_path in _tabular_files(tmp):
        paths.append(csv_path.replace(".csv", ".parquet"))
        pq.write_table(pv.read_csv(csv_path), paths[-1])
    train, val, test = paths
    return md.load("tabular", path=train, validation_path=val, test_path=test, label_columns="click,buy,dwell",
                   regression_columns="dwell", categorical_columns="color", numeric_columns="x,uid",
                   cache_dir=tmp / "cache", verbose=False)


def _kuairand_pure(data_dir, tmp):
    if not (data_dir / "kuairand_pure").is_dir():
        pytest.skip(f"KuaiRand-Pure not found at {data_dir / 'kuairand_pure'}")
    return md.load("kuairand_pure", data_dir=data_dir, cache_dir=tmp, verbose=False)


CASES = {
    "synthetic": Case(lambda d, tmp: md.load("synthetic", num_train=300, num_validation=60, num_test=60, dim=8,
                                             seed=1), rows_are_unique=True),
    "census_income": Case(lambda d, tmp: md.load("census_income", data_dir=d, task_group=1, cache_dir=tmp),
                          needs_shared_data=True),
    "ali_ccp": Case(lambda d, tmp: md.load("ali_ccp", data_dir=d, sample=True, cache_dir=tmp), needs_shared_data=True),
    "aliexpress": Case(lambda d, tmp: md.load("aliexpress", data_dir=d, sample=True, cache_dir=tmp),
                       needs_shared_data=True),
    "kuairand_pure": Case(_kuairand_pure, needs_shared_data=True,
                          not_checkable="split by date, which is not a feature (the split key): no date is left in the "
                                        "arrays to compare; test_kuairand_pure.py checks the split against the log"),
    "tabular": Case(_tabular, rows_are_unique=True),
    "tabular:parquet": Case(_tabular_parquet, rows_are_unique=True),  # LOADER:variant, the same loader
}


def test_every_loader_has_a_case():
    assert {name.partition(":")[0] for name in CASES} == set(md.LOADERS), "add the new loader to CASES"


@pytest.fixture(scope="module", params=sorted(CASES))
def loaded(request, tmp_path_factory):
    case = CASES[request.param]
    data_dir = request.getfixturevalue("data_dir") if case.needs_shared_data else None
    return request.param, case, case.load(data_dir, tmp_path_factory.mktemp(request.param))


def test_splits_shapes_and_label_kinds(loaded):
    name, _, data = loaded
    t = len(data.tasks)
    for split_name, s in data.splits().items():
        n = len(s)
        assert n > 0, split_name
        assert s.numeric.shape == (n, len(data.numeric_names)) and s.numeric.dtype == np.float32
        assert s.categorical.shape == (n, len(data.categorical_names)) and s.categorical.dtype == np.int32
        assert s.labels.shape == (n, t) and np.all(np.isfinite(s.labels)) and np.all(np.isfinite(s.numeric))
        for j, task in enumerate(data.tasks):
            if task.kind == "binary":
                assert set(np.unique(s.labels[:, j])) <= {0.0, 1.0}, (split_name, task.name)
        if len(data.vocab_sizes):
            assert np.all(s.categorical >= 0) and np.all(s.categorical < np.asarray(data.vocab_sizes)), split_name


def test_splits_are_disjoint(loaded):
    name, case, data = loaded
    if not case.rows_are_unique:
        pytest.skip(f"{name}: {case.not_checkable}")
    keys = {k: {r.tobytes() for r in np.concatenate([s.numeric, s.categorical.astype(np.float32)], 1)}
            for k, s in data.splits().items()}
    assert sum(map(len, keys.values())) == sum(len(s) for s in data.splits().values())  # unique within splits too
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]


def test_categories_and_scaling_come_from_the_training_split(loaded):
    name, _, data = loaded
    for f, field in enumerate(data.categorical_names):
        seen = set(np.unique(data.train.categorical[:, f]).tolist())
        for split_name in ("validation", "test"):
            ids = set(np.unique(getattr(data, split_name).categorical[:, f]).tolist())
            # an id that training never produced can only be the out-of-vocabulary bucket 0
            assert ids <= seen | {0}, (name, field, split_name, sorted(ids - seen))
    stats = data.info.get("numeric_train_mean_std")
    if stats:  # standardised with training statistics: the training split has mean 0 and std 1
        x = data.train.numeric.astype(np.float64)
        np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)
        # a missing number becomes the training mean, 0 after scaling: the values present (non-zero) have std 1
        present = x != 0
        varying = present.sum(0) > 1
        rms = np.sqrt((x**2).sum(0)[varying] / present.sum(0)[varying])
        np.testing.assert_allclose(rms, 1.0, rtol=1e-3)


def test_tabular_test_only_category_and_numeric_scaling_by_hand(tmp_path):
    data = _tabular(None, tmp_path)
    raw = {k: np.genfromtxt(tmp_path / f"{k}.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
           for k in ("train", "val", "test")}
    test_colors = raw["test"]["color"]
    color = data.test.categorical[:, data.categorical_names.index("color")]
    assert np.all(color[test_colors == "violet"] == 0) and np.all(color[test_colors != "violet"] > 0)
    assert data.vocab_sizes[data.categorical_names.index("color")] == 4  # OOV + the three training colours
    x_train = raw["train"]["x"].astype(np.float64)
    for split, key in ((data.train, "train"), (data.validation, "val"), (data.test, "test")):
        expected = (raw[key]["x"] - x_train.mean()) / x_train.std()
        np.testing.assert_allclose(split.numeric[:, data.numeric_names.index("x")], expected, rtol=1e-5, atol=1e-6)
    dwell = data.tasks[data.task_names.index("dwell")]
    d_train = raw["train"]["dwell"].astype(np.float64)
    assert dwell.label_mean == pytest.approx(d_train.mean()) and dwell.label_std == pytest.approx(d_train.std())
