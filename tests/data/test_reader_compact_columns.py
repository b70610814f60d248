"""Columns kept compact while read: integer ids (``Column("factor", integers=True)``), parsed as
numbers and coded as text; and a typed file's non-integer numbers (``Column("auto", exact=False)``),
kept as float32 once a fraction shows them numeric."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtl.data.reader import Column, read_columns, read_header


def _read(tmp_path, rows, integers=True):
    path = tmp_path / "f.csv"
    path.write_text("id,y\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(rows)))
    table = read_columns(read_header(path), {"id": Column("factor", integers=integers), "y": Column("label")})
    return table.categorical["id"]


def test_integer_ids_are_coded_in_the_order_of_their_text(tmp_path):
    factor = _read(tmp_path, [9, 10, 100, 9, 2, 10])
    assert factor.values.dtype.kind == "i"  # kept as integers, not as strings
    assert list(factor.values.astype(str)) == ["10", "100", "2", "9"]  # "10" < "100" < "2" < "9", by hand
    assert factor.codes.tolist() == [3, 0, 1, 3, 2, 0]
    assert factor.strings().tolist() == ["9", "10", "100", "9", "2", "10"]


@pytest.mark.parametrize("ids", [
    [400, 5, -300, 0, -30, 47, 40, -3, 7, 4],  # a prefix after its extension: the digit count decides
    [10**18, 99, 9, 10**18 + 1, -(10**17), 123456789012345678],  # beyond 17 digits: the texts sort
])  # fmt: skip
def test_text_order_with_signs_and_long_ids(tmp_path, ids):
    factor = _read(tmp_path, ids)
    assert list(factor.values.astype(str)) == sorted(map(str, ids))  # Python's own string order
    assert factor.strings().tolist() == [str(v) for v in ids]


def test_ids_beyond_int32_are_kept_exactly(tmp_path):
    big = 2**40 + 7
    factor = _read(tmp_path, [1, big, -(2**35), 1])
    assert factor.strings().tolist() == ["1", str(big), str(-(2**35)), "1"]


@pytest.mark.parametrize("odd", ["abc", "", "NA", "7.5"])
def test_a_column_with_another_or_a_missing_value_is_read_as_text(tmp_path, odd):
    rows = ["3", "12", odd, "3"]
    factor = _read(tmp_path, rows)
    assert factor.values.dtype.kind == "U"
    assert factor.strings().tolist() == rows
    assert list(factor.values) == sorted(set(rows))


def test_same_codes_as_reading_text(tmp_path):
    rows = np.random.default_rng(0).integers(0, 5000, 3000).tolist()
    a, b = _read(tmp_path, rows), _read(tmp_path, rows, integers=False)
    assert np.array_equal(a.codes, b.codes) and a.values.astype(str).tolist() == b.values.tolist()


def _auto(tmp_path, values, exact):
    """Column ``x`` of files of two rows each: one batch per file."""
    headers = []
    for i in range(0, len(values), 2):
        path = tmp_path / f"f{i}.parquet"
        x = pa.array(values[i : i + 2], pa.float64())
        pq.write_table(pa.table({"x": x, "y": [0, 1][: len(x)]}), path)
        headers.append(read_header(path))
    table = read_columns(headers, {"x": Column("auto", exact=exact), "y": Column("label")})
    return table.auto["x"]


@pytest.mark.parametrize("values, kind, compact", [
    ([1.0, 2.0, 0.5, np.nan, 3.25, 1.0], "numeric", True),  # a fraction in the second batch
    ([1.0, np.inf, 0.5, 2.0, 1.5, 1.0], "categorical", False),  # an infinity before the fraction
    ([1.0, 2.0, 3.0, np.nan, 2.0, 1.0], "categorical", False),  # integers: their distinct values decide
])  # fmt: skip
def test_inexact_auto_numbers(tmp_path, values, kind, compact):
    column = _auto(tmp_path, values, exact=False)
    assert column.infer(max_categorical_distinct=50)[0] == kind  # by hand: the rule in docs/data.md
    assert (column.numbers is not None and column.numbers.dtype == np.float32) == compact
    np.testing.assert_array_equal(column.as_numbers(), np.array(values, np.float32))
    if not compact:
        assert column.factor.strings().tolist() == _auto(tmp_path, values, True).factor.strings().tolist()


def test_an_infinity_after_a_fraction_reads_the_column_as_text(tmp_path):
    column = _auto(tmp_path, [1.5, 2.0, 3.0, np.inf], exact=False)
    assert column.numbers is None and column.infer(max_categorical_distinct=50) == ("categorical", "non-finite numbers")
    assert column.factor.strings().tolist() == ["1.5", "2", "3", "inf"]
