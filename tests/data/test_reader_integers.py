"""Factor columns of integer ids (``Column("factor", integers=True)``): parsed as numbers, coded as text."""

from __future__ import annotations

import numpy as np
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
