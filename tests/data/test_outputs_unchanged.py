"""The pyarrow reader gives exactly the results of the hand-written reader it replaced.

``outputs_unchanged.json`` holds, for every shared data file and every test fixture
below, a digest of what the previous reader (the pure-Python one, before the
pyarrow rewrite) returned: the sha256 of every split array (numeric, categorical,
labels) with its shape, the task, feature and vocabulary lists and the ``info``
dict, or the exact error message. It was written by running this file as a script
against the previous code::

    PYTHONPATH=<checkout of the previous mtl> python tests/data/test_outputs_unchanged.py --write

Do not regenerate it to make a test pass: a difference here is a change of results.
New options that change results by design (standardised regression labels, user
codes, the tabular loader's ``min_count``) are turned off or left out here and tested
on their own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pathlib
import sys

import numpy as np
import pytest

GOLDEN = pathlib.Path(__file__).with_name("outputs_unchanged.json")
# Keys the new loaders add to ``info``; everything else must be identical.
NEW_INFO_KEYS = ("user_column", "label_standardization", "min_count", "text_columns_dropped", "joins", "split_column",
                 "label_transforms")
# Keys the loaders no longer record: ``reader`` (the loaders lost ``reader="tfds"``; the builders stay).
GONE_INFO_KEYS = ("reader",)


def _write(path: pathlib.Path, text: str, encoding: str = "utf-8") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return str(path)


def _small_csv(folder, n=60, name="data.csv", delimiter=",", seed=0):
    rng = np.random.default_rng(seed)
    header = ["click", "buy", "dwell", "city", "price", "age"]
    rows = [delimiter.join(header)]
    for i in range(n):
        rows.append(delimiter.join(map(str, [i % 2, (i % 4 == 1) * 1, round(rng.normal(), 3), f"c{i % 5}",
                                             round(rng.uniform(0, 100), 2), 20 + i])))  # fmt: skip
    return _write(folder / name, "\n".join(rows) + "\n")


def _messy_csv(folder):
    """Quoted fields with delimiters and newlines, blank lines, padding, CRLF, Unicode, a BOM."""
    rng = np.random.default_rng(1)
    lines = ["\ufeff  y , z ,\"na,me\",città,x,n  "]
    for i in range(90):
        name = ['"a, b"', '"multi\nline"', " plain ", '"q""uote"', "Zoë", "", "NA"][i % 7]
        city = ["Genève", "東京", "Zürich", "?"][i % 4]
        x = ["", "NA", f"{rng.normal():.4f}", f" {rng.normal():.3e} ", "nan", "1_0" if False else "7"][i % 6]
        lines.append(f"{i % 2},{(i // 2) % 2},{name},{city},{x},{rng.integers(0, 1000)}")
        if i % 13 == 0:
            lines.append("")
    return _write(folder / "messy.csv", "\r\n".join(lines) + "\r\n\r\n")


def _census_subset(data_dir, folder, num_lines, name, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(data_dir / "census_income_kdd" / "census-income.test.gz", "rt", encoding="latin-1") as f:
        lines = f.read().splitlines()[start : start + num_lines]
    with gzip.open(folder / name, "wt", encoding="latin-1") as f:
        f.write("\n".join(lines) + "\n")


ALI_CCP_SPARSE = ("101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,"
                  "109_14,110_14,127_14,150_14")


def cases(data_dir: pathlib.Path, tmp: pathlib.Path):
    """``{name: (loader, kwargs)}``; fixture files are written under ``tmp``."""
    cache = str(tmp / "cache")
    tr = data_dir / "ali_ccp" / "torch_rechub_samples"
    ae = data_dir / "aliexpress"
    census_pre = data_dir / "census_income_kdd" / "torch_rechub_preprocessed_samples"
    kuai = str(data_dir / "kuairand_sample" / "kuairand_sample.csv")
    out = {
        "census_group1": ("census_income", dict(data_dir=data_dir, task_group=1, cache_dir=cache)),
        "census_group2": ("census_income", dict(data_dir=data_dir, task_group=2, cache_dir=cache)),
        "ali_ccp_torch_rechub": ("ali_ccp", dict(data_dir=data_dir, sample=True, cache_dir=cache)),
        "ali_ccp_torch_rechub_ctcvr": ("ali_ccp", dict(data_dir=data_dir, sample=True, tasks="click,ctcvr,purchase",
                                                       cache_dir=cache)),
        "ali_ccp_paddlerec": ("ali_ccp", dict(data_dir=data_dir, sample=True, format="paddlerec", tasks="click,ctcvr",
                                              allow_single_class=True, cache_dir=cache)),
        "ali_ccp_paddlerec_seed3": ("ali_ccp", dict(data_dir=data_dir, sample=True, format="paddlerec", seed=3,
                                                    validation_fraction=0.3, allow_single_class=True, cache_dir=cache)),
        "aliexpress_sample": ("aliexpress", dict(data_dir=data_dir, sample=True, cache_dir=cache)),
        "aliexpress_sample_seed1": ("aliexpress", dict(data_dir=data_dir, sample=True, seed=1, tasks="click,ctcvr",
                                                       allow_single_class=True, cache_dir=cache)),
        "tabular_ali_ccp_files": ("tabular", dict(path=str(tr / "ali_ccp_train_sample.csv"),
                                                  validation_path=str(tr / "ali_ccp_val_sample.csv"),
                                                  test_path=str(tr / "ali_ccp_test_sample.csv"),
                                                  label_columns="click,purchase", verbose=False)),
        "tabular_ali_ccp_forced": ("tabular", dict(path=str(tr / "ali_ccp_train_sample.csv"),
                                                   validation_path=str(tr / "ali_ccp_val_sample.csv"),
                                                   test_path=str(tr / "ali_ccp_test_sample.csv"),
                                                   label_columns="click,purchase", categorical_columns=ALI_CCP_SPARSE,
                                                   verbose=False)),
        "tabular_ali_ccp_one_file": ("tabular", dict(path=str(tr / "ali_ccp_train_sample.csv"),
                                                     label_columns="click,purchase", allow_single_class=True,
                                                     seed=2, verbose=False)),
        "tabular_aliexpress": ("tabular", dict(path=str(ae / "aliexpress_train_sample.csv"),
                                               test_path=str(ae / "aliexpress_test_sample.csv"),
                                               label_columns="click,conversion", drop_columns="search_id",
                                               split="0.7,0.3,0", verbose=False)),
        "tabular_kuairand": ("tabular", dict(path=kuai, label_columns="is_click,play_time_ms",
                                             regression_columns="play_time_ms", drop_columns="user_id,video_id",
                                             categorical_columns="tab", verbose=False)),
        "tabular_kuairand_hashed": ("tabular", dict(path=kuai, label_columns="is_click", drop_columns="video_id",
                                                    hash_buckets=16, hash_threshold=20, missing_indicators=True,
                                                    max_categorical_distinct=10, split="0.6,0.2,0.2", seed=5,
                                                    verbose=False)),
        "tabular_census_preprocessed": ("tabular", dict(path=str(census_pre / "census_income_train_sample.csv"),
                                                        validation_path=str(census_pre
                                                                            / "census_income_val_sample.csv"),
                                                        test_path=str(census_pre / "census_income_test_sample.csv"),
                                                        label_columns="income,marital status", verbose=False)),
    }
    # fixtures
    census_dir = tmp / "census"
    _census_subset(data_dir, census_dir, 3_000, "census-income.data.gz", start=10_000)
    _census_subset(data_dir, census_dir, 2_000, "census-income.test.gz")
    out["census_paper_subset"] = ("census_income", dict(data_dir=census_dir, cache_dir=cache, seed=1,
                                                        check_row_counts=False))
    out["census_paper_subset_group2"] = ("census_income", dict(data_dir=census_dir, cache_dir=cache, task_group=2,
                                                               protocol="test_split", check_row_counts=False))
    out["small_csv"] = ("tabular", dict(path=_small_csv(tmp, n=200), label_columns="click,buy", seed=3, verbose=False))
    out["small_csv_regression"] = ("tabular", dict(path=_small_csv(tmp, n=80, name="r.csv"),
                                                   label_columns="click,dwell", regression_columns="dwell",
                                                   drop_columns="buy", verbose=False))
    for d in ("\t", ";", "|"):
        out[f"small_csv_delimiter_{ord(d)}"] = ("tabular", dict(
            path=_small_csv(tmp, n=40, name=f"d{ord(d)}.txt", delimiter=d), label_columns="click",
            split="0.5,0.25,0.25", verbose=False))
    lines = ["y,color,x"] + [f"{i % 2},{'red' if i % 3 else 'blue'},{i}" for i in range(40)]
    out["vocabulary_oov"] = ("tabular", dict(
        path=_write(tmp / "v" / "train.csv", "\n".join(lines) + "\n"),
        validation_path=_write(tmp / "v" / "val.csv", "y,color,x\n0,red,1\n1,green,2\n"),
        test_path=_write(tmp / "v" / "test.csv", "y,color,x\n0,blue,1\n1,,2\n"),
        label_columns="y", categorical_columns="color", numeric_columns="x", verbose=False))
    rows = ["y,num,cat"]
    for i in range(30):
        num = ["", "NA", "nan", "?"][i % 4] if i % 5 == 0 else str(i * 1.5)
        cat = ["", "NA", "?"][i % 3] if i % 7 == 0 else f"k{i % 3}"
        rows.append(f"{i % 2},{num},{cat}")
    other = _write(tmp / "m" / "other.csv", "y,num,cat\n0,1,k1\n1,2,k2\n")
    out["missing_values"] = ("tabular", dict(path=_write(tmp / "m" / "m.csv", "\n".join(rows) + "\n"),
                                             validation_path=other, test_path=other, label_columns="y",
                                             missing_indicators=True, verbose=False))
    rows = ["y,user,x"] + [f"{i % 2},u{i},{i % 7}.5" for i in range(100)]
    out["hash_buckets"] = ("tabular", dict(path=_write(tmp / "h.csv", "\n".join(rows) + "\n"), label_columns="y",
                                           categorical_columns="user", hash_buckets=16, verbose=False))
    out["messy"] = ("tabular", dict(path=_messy_csv(tmp), label_columns="y,z", verbose=False))
    out["messy_semicolon_forced"] = ("tabular", dict(path=_messy_csv(tmp), label_columns="y", numeric_columns="n",
                                                     categorical_columns="x", drop_columns="z", seed=9,
                                                     verbose=False))
    rng = np.random.default_rng(0)
    n = 20_000
    cols = [rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 30, n), rng.normal(size=n).round(3),
            rng.integers(0, 500, n)]
    body = "\n".join(f"{a},{b},k{c},{d},{e}" for a, b, c, d, e in zip(*cols))
    out["twenty_thousand_rows"] = ("tabular", dict(path=_write(tmp / "big.csv", "y1,y2,cat,num,count\n" + body + "\n"),
                                                   label_columns="y1,y2", hash_buckets=20, verbose=False))
    return out


def error_cases(data_dir: pathlib.Path, tmp: pathlib.Path):
    """``{name: (loader, kwargs)}`` that must fail; the message is pinned."""
    e = tmp / "errors"
    out = {}

    def tab(name, text, **kwargs):
        kwargs.setdefault("label_columns", "y")
        out[name] = ("tabular", dict(path=_write(e / f"{name}.csv", text), verbose=False, **kwargs))

    tab("label_2", "y,x\n0,1\n1,2\n2,3\n1,4\n")
    tab("label_yes", "y,x\n0,1\nyes,2\n")
    tab("label_missing", "y,x\n0,1\n,2\nNA,3\n")
    tab("label_padded_na", "y,x\n0,1\n1,3\n NA ,3\n")
    tab("label_minus_nan", "y,x\n0,1\n-nan,2\n")
    tab("label_half", "y,x\n0,1\n0.5,2\n1,3\n")
    tab("regression_inf", "y,r,x\n0,1.5,1\n1,inf,2\n", label_columns="y,r", regression_columns="r")
    tab("regression_word", "y,r,x\n0,1.5,1\n1,fast,2\n", label_columns="y,r", regression_columns="r")
    tab("regression_underscore", "y,r,x\n0,1_5,1\n1,2,2\n", label_columns="y,r", regression_columns="r")
    tab("numeric_word", "y,x,w\n0,1,a\n1,2,b\n0,abc,c\n", numeric_columns="x")
    tab("numeric_underscore", "y,x\n0,1\n1,12_5\n", numeric_columns="x")
    tab("numeric_two_bad_columns", "y,a,b\n0,1,2\n1,x,2\n0,1,y\n", numeric_columns="a,b")
    tab("numeric_bad_and_label_bad", "y,a\n0,1\n1,x\n5,1\n", numeric_columns="a")
    tab("ragged_short", "y,a,b\n0,1,2\n1,1,2\n0,1\n1,1,2\n")
    tab("ragged_long_quoted", 'y,a,b\n0,"x",2\n1,1,2,9\n')
    tab("ragged_after_value_error", "y,a\n0,x\n1,2\n0,1,3\n", numeric_columns="a")
    tab("ragged_and_missing_label_column", "q,a\n0,x\n1,2,3\n")
    tab("empty", "")
    tab("blank", "\n  \n")
    tab("header_only", "y,x\n")
    tab("header_only_blank_lines", "\n\ny,x\n\n")
    tab("duplicate_header", "y,a,a\n0,1,2\n")
    tab("empty_header_name", "y,,b\n0,1,2\n")
    tab("semicolon_given_comma", "y;a;b\n0;1;2\n1;2;3\n", delimiter=",")
    tab("cannot_detect", "y\n0\n1\n")
    tab("delimiter_two_chars", "y,a\n0,1\n", delimiter=",,")
    tab("missing_label_column", "y,a\n0,1\n1,2\n", label_columns="y,purchase")
    tab("unknown_drop", "y,a\n0,1\n1,2\n", drop_columns="nope")
    tab("regression_not_label", "y,a\n0,1\n1,2\n", regression_columns="a")
    tab("categorical_is_label", "y,a\n0,1\n1,2\n", categorical_columns="y")
    tab("both_types", "y,a\n0,1\n1,2\n", categorical_columns="a", numeric_columns="a")
    tab("single_class", "y,z,x\n" + "".join(f"{i % 2},0,{i}\n" for i in range(20)), label_columns="y,z")
    tab("bad_split", "y,x\n0,1\n1,2\n", split="0.8,0.3,0.1")
    tab("quoted_line_numbers", 'y,name,x\n0,"a, b",1\n1,"multi\nline",2\n\n0,c,oops\n', numeric_columns="x")
    tab("no_features", "y,a\n0,1\n1,2\n", drop_columns="a")
    tab("unterminated_quote", 'y,a,b\n0,1,2\n1,"open,2\n0,1,2\n')
    other = _write(e / "other.csv", "y,b\n0,1\n")
    tab("columns_differ", "y,a\n0,1\n1,2\n", test_path=other)
    out["not_found"] = ("tabular", dict(path=str(e / "nothere.csv"), label_columns="y"))
    # AliExpress: a conversion label of 3 on line 6
    folder = e / "AliExpress_NL"
    lines = (data_dir / "aliexpress" / "aliexpress_train_sample.csv").read_text().splitlines()
    fields = lines[5].split(",")
    fields[-1] = "3"
    lines[5] = ",".join(fields)
    _write(folder / "train.csv", "\n".join(lines) + "\n")
    _write(folder / "test.csv", (data_dir / "aliexpress" / "aliexpress_test_sample.csv").read_text())
    out["aliexpress_conversion_3"] = ("aliexpress", dict(data_dir=folder, cache_dir=str(e / "cache")))
    folder = e / "ae_numeric" / "AliExpress_NL"
    lines = (data_dir / "aliexpress" / "aliexpress_train_sample.csv").read_text().splitlines()
    fields = lines[9].split(",")
    fields[30] = "1.2.3"
    lines[9] = ",".join(fields)
    _write(folder / "train.csv", "\n".join(lines) + "\n")
    _write(folder / "test.csv", (data_dir / "aliexpress" / "aliexpress_test_sample.csv").read_text())
    out["aliexpress_numeric"] = ("aliexpress", dict(data_dir=folder, cache_dir=str(e / "cache")))
    folder = e / "ae_header" / "AliExpress_NL"
    _write(folder / "train.csv", "search_id,click\n1,0\n")
    _write(folder / "test.csv", "search_id,click\n1,0\n")
    out["aliexpress_header"] = ("aliexpress", dict(data_dir=folder, cache_dir=str(e / "cache")))
    # Ali-CCP PaddleRec
    for name, text in (("feature", "1,0,0,101:1,210:2\n2,1,0,101:3,2104\n"), ("label", "1,0,0,101:1\n2,2,0,101:3\n"),
                       ("fields", "1,0,0,101:1\n\n2,1\n")):
        folder = e / f"paddle_{name}" / "ali_ccp"
        _write(folder / "train.txt", text)
        _write(folder / "test.txt", "1,0,0,101:1\n")
        out[f"ali_ccp_paddlerec_{name}"] = ("ali_ccp", dict(data_dir=folder.parent, cache_dir=str(e / "cache")))
    folder = e / "torch_header" / "ali_ccp"
    for name in ("ali_ccp_train.csv", "ali_ccp_val.csv", "ali_ccp_test.csv"):
        _write(folder / name, "click,purchase,101\n0,0,1\n")
    out["ali_ccp_torch_rechub_header"] = ("ali_ccp", dict(data_dir=folder.parent, cache_dir=str(e / "cache")))
    # Census
    good = " 73, Not in universe" + ", x" * 39 + ", - 50000."
    folder = e / "census_fields"
    _write(folder / "census-income.test", good.replace(" x", " 1.5") + "\n" + good + ", extra\n")
    out["census_fields"] = ("census_income", dict(data_dir=folder, cache_dir=str(e / "cache"), check_row_counts=False))
    fields = good.replace(" x", " 1.5").split(",")
    fields[0] = " seventy"
    folder = e / "census_age"
    _write(folder / "census-income.test", ",".join(fields) + "\n")
    out["census_age"] = ("census_income", dict(data_dir=folder, cache_dir=str(e / "cache"), check_row_counts=False))
    folder = e / "census_income_value"
    _census_subset(data_dir, folder, 50, "census-income.test.gz")
    with gzip.open(folder / "census-income.test.gz", "rt", encoding="latin-1") as f:
        lines = f.read().splitlines()
    lines[7] = lines[7].replace("- 50000.", "- 5000O.")
    with gzip.open(folder / "census-income.test.gz", "wt", encoding="latin-1") as f:
        f.write("\n".join(lines) + "\n")
    out["census_income_value"] = ("census_income", dict(data_dir=folder, cache_dir=str(e / "cache"),
                                                        check_row_counts=False))
    out["census_row_count"] = ("census_income", dict(data_dir=e / "census_income_value", cache_dir=str(e / "cache")))
    return out


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:20]


def digest(data, data_dir, tmp) -> dict:
    def norm(s: str) -> str:
        return s.replace(str(tmp), "<tmp>").replace(str(data_dir), "<data>")

    info = {k: v for k, v in data.info.items() if k not in NEW_INFO_KEYS}
    out = {
        "tasks": [[t.name, t.kind] for t in data.tasks],
        "numeric_names": list(data.numeric_names),
        "categorical_names": list(data.categorical_names),
        "vocab_sizes": [int(v) for v in data.vocab_sizes],
        "info": norm(json.dumps(info, sort_keys=True, default=str)),
    }
    for name, split in data.splits().items():
        out[name] = {
            k: [list(getattr(split, k).shape), str(getattr(split, k).dtype), _sha(getattr(split, k))]
            for k in ("numeric", "categorical", "labels")
        }
    return out


def error_message(loader, kwargs, data_dir, tmp) -> str:
    from mtl.data import DataError, load

    try:
        load(loader, **kwargs)
    except DataError as e:
        return str(e).replace(str(tmp), "<tmp>").replace(str(data_dir), "<data>")
    raise AssertionError(f"{loader} {kwargs} loaded without error")


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("unchanged")


@pytest.fixture(scope="module")
def output_cases(data_dir, fixture_dir):
    return cases(data_dir, fixture_dir)


@pytest.fixture(scope="module")
def failing_cases(data_dir, fixture_dir):
    return error_cases(data_dir, fixture_dir)


def _case_names(kind):
    return sorted(json.loads(GOLDEN.read_text())[kind]) if GOLDEN.is_file() else []


@pytest.mark.parametrize("name", _case_names("outputs"))
def test_outputs_unchanged(name, golden, data_dir, fixture_dir, output_cases):
    from mtl.data import load

    loader, kwargs = output_cases[name]
    kwargs = dict(kwargs)
    if loader == "tabular":
        kwargs["standardize_labels"] = False  # the old reader kept raw regression labels
        kwargs["min_count"] = 1  # ... and gave every training value an id
    want = dict(golden["outputs"][name])
    want["info"] = json.dumps({k: v for k, v in json.loads(want["info"]).items() if k not in GONE_INFO_KEYS},
                              sort_keys=True)  # fmt: skip
    assert digest(load(loader, **kwargs), data_dir, fixture_dir) == want


@pytest.mark.parametrize("name", _case_names("errors"))
def test_errors_still_name_the_place(name, golden, data_dir, fixture_dir, failing_cases):
    """Each bad input still fails with a DataError naming what the old message named: the
    file, and a line and the column where it did (the wording may differ)."""
    loader, kwargs = failing_cases[name]
    got, want = error_message(loader, kwargs, data_dir, fixture_dir), golden["errors"][name]
    where = want.split(": ")[0].split(", ")
    assert got.split(": ")[0].split(", ")[0] == where[0], (got, want)
    for part in where[1:]:  # "line N" (its number may differ), "column 'x'"
        assert (part.split()[0] if part.startswith("line ") else part) in got.split(": ")[0], (got, want)


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from conftest import shared_data_dir

    from mtl.data import load

    data_dir = shared_data_dir()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        result = {"outputs": {}, "errors": {}}
        for name, (loader, kwargs) in cases(data_dir, tmp).items():
            result["outputs"][name] = digest(load(loader, **kwargs), data_dir, tmp)
        for name, (loader, kwargs) in error_cases(data_dir, tmp).items():
            result["errors"][name] = error_message(loader, kwargs, data_dir, tmp)
    GOLDEN.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}: {len(result['outputs'])} outputs, {len(result['errors'])} errors")
    os._exit(0)
