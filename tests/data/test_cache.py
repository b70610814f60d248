"""The caches: memory-mapped, keyed by the files and the arguments, never trusted when damaged."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from mtl.data import DataError, load, reader
from mtl.data import cache as cache_lib


def _csv(path: pathlib.Path, n: int = 300, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    rows = ["y,z,city,price"] + [f"{i % 2},{(i // 2) % 2},c{rng.integers(0, 7)},{rng.normal():.4f}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def _load(path, cache, **kwargs):
    return load("tabular", path=path, label_columns="y,z", cache_dir=str(cache), verbose=False, **kwargs)


def _same(a, b):
    for name in ("train", "validation", "test"):
        x, y = getattr(a, name), getattr(b, name)
        for k in ("numeric", "categorical", "labels"):
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k))
    assert a.tasks == b.tasks and a.vocab_sizes == b.vocab_sizes and a.info == b.info


def _in_memory(data):
    """A copy that no longer maps the cache file (the tests below damage the files in place,
    which a memory map would feel as a bus error; the library itself only renames and unlinks)."""
    for split in data.splits().values():
        split.numeric, split.categorical, split.labels = (np.array(a) for a in
                                                          (split.numeric, split.categorical, split.labels))
    return data


def _entries(cache: pathlib.Path, dataset="tabular", kind="prepared"):
    folder = cache / dataset / kind
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def _is_memory_mapped(a: np.ndarray) -> bool:
    while a is not None and not isinstance(a, np.memmap):
        a = a.base
    return a is not None


def test_second_load_is_memory_mapped_and_identical(tmp_path, capsys):
    path = _csv(tmp_path / "d.csv")
    first = load("tabular", path=path, label_columns="y,z", cache_dir=str(tmp_path / "c"))
    printed = capsys.readouterr().out
    again = load("tabular", path=path, label_columns="y,z", cache_dir=str(tmp_path / "c"))
    assert capsys.readouterr().out == printed and "inferred" in printed  # the column table, from the cache
    _same(first, again)
    for split in again.splits().values():
        for a in split.as_dict().values():
            assert _is_memory_mapped(a) and not a.flags.writeable and a.flags.c_contiguous
    assert len(_entries(tmp_path / "c")) == 1


def test_key_covers_arguments_and_file_state(tmp_path):
    path = _csv(tmp_path / "d.csv")
    cache = tmp_path / "c"
    a = _load(path, cache, seed=0)
    b = _load(path, cache, seed=1)
    assert len(_entries(cache)) == 2 and not np.array_equal(a.test.numeric, b.test.numeric)
    _csv(tmp_path / "d.csv", seed=5)  # new content (same size is possible; the mtime moves)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c = _load(path, cache, seed=0)
    assert len(_entries(cache)) == 3 and not np.array_equal(a.train.numeric, c.train.numeric)


def _damage(entry: pathlib.Path, how: str) -> None:
    meta = entry / cache_lib.META
    pack = max(entry.glob("*.npy"), key=lambda p: p.stat().st_size)  # the largest array file
    if how == "truncated pack":
        with open(pack, "r+b") as f:
            f.truncate(pack.stat().st_size // 2)
    elif how == "bytes appended":
        with open(pack, "ab") as f:
            f.write(b"\0" * 100)
    elif how == "flipped byte":
        with open(pack, "r+b") as f:
            f.seek(200)  # past the .npy header: in the data
            byte = f.read(1)
            f.seek(200)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif how == "meta garbage":
        meta.write_text("{not json")
    elif how == "meta edited":
        m = json.loads(meta.read_text())
        m["vocab_sizes"][0] += 1  # checksum no longer matches
        meta.write_text(json.dumps(m))
    elif how == "meta missing":
        meta.unlink()
    elif how == "pack missing":
        pack.unlink()
    elif how == "empty folder":
        for p in entry.iterdir():
            p.unlink()


@pytest.mark.parametrize("how", ["truncated pack", "bytes appended", "flipped byte", "meta garbage", "meta edited",
                                 "meta missing", "pack missing", "empty folder"])  # fmt: skip
def test_damaged_entries_are_rebuilt_not_trusted(tmp_path, how):
    path = _csv(tmp_path / "d.csv")
    cache = tmp_path / "c"
    fresh = _in_memory(_load(path, cache))
    (entry,) = _entries(cache)
    _damage(entry, how)
    again = _load(path, cache)
    _same(fresh, again)
    assert cache_lib.read_entry(entry, kind="prepared") is not None  # rebuilt in place


def test_leftovers_of_killed_runs_are_never_read_and_are_cleaned(tmp_path):
    path = _csv(tmp_path / "d.csv")
    cache = tmp_path / "c"
    fresh = _in_memory(_load(path, cache))
    (entry,) = _entries(cache)
    dead_pid = 2**22 + 7  # above Linux's largest pid: no such process
    leftover = entry.parent / f".tmp-{entry.name}-{dead_pid}-deadbeef"
    leftover.mkdir()
    (leftover / "arrays.bin").write_bytes(b"partial")
    _damage(entry, "meta missing")  # the killed run's entry never got its meta.json
    _same(fresh, _load(path, cache))
    assert not leftover.exists()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    path = _csv(tmp_path / "d.csv")
    cache = tmp_path / "c"

    def interrupted(self):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(cache_lib.PackWriter, "close", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _load(path, cache)
    assert not list((cache / "tabular" / "prepared").iterdir())
    assert _load(path, cache).train.numeric.shape[0] > 0


def _changing_reader(monkeypatch, path: pathlib.Path, change) -> None:
    """pyarrow's reader, with ``change(path)`` applied to the file after the first block."""
    monkeypatch.setattr(reader, "BLOCK_SIZE", 2048)
    original = reader._open

    def reading(*args, **kwargs):
        for k, batch in enumerate(original(*args, **kwargs)):
            if k == 1:
                change(path)
            yield batch

    monkeypatch.setattr(reader, "_open", reading)


@pytest.mark.parametrize("change", ["append", "truncate", "rewrite"])
def test_a_file_that_changes_while_read_is_not_cached(tmp_path, monkeypatch, change):
    path = pathlib.Path(_csv(tmp_path / "d.csv", n=2000))
    cache = tmp_path / "c"

    def edit(p: pathlib.Path):
        if change == "append":
            with open(p, "a") as f:
                f.write("1,0,c1,0.5\n" * 50)
        elif change == "truncate":
            with open(p, "r+") as f:
                f.truncate(p.stat().st_size // 3)
        else:
            data = p.read_bytes()
            p.write_bytes(data.replace(b"c1", b"c9"))
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    with monkeypatch.context() as m:
        _changing_reader(m, path, edit)
        with pytest.raises(DataError, match=r"d.csv: changed while it was read .*nothing was cached"):
            _load(str(path), cache)
    assert not _entries(cache) and not list((cache / "tabular" / "prepared").glob(".tmp*"))
    after = _load(str(path), cache)  # the file as it is now
    rows = sum(len(s) for s in after.splits().values())
    assert rows == len(path.read_text().strip().splitlines()) - 1


def test_a_dataset_file_that_changes_while_read_caches_nothing(tmp_path, data_dir, monkeypatch):
    folder = tmp_path / "AliExpress_NL"
    folder.mkdir()
    train = (data_dir / "aliexpress" / "aliexpress_train_sample.csv").read_text()
    (folder / "train.csv").write_text(train)
    (folder / "test.csv").write_text((data_dir / "aliexpress" / "aliexpress_test_sample.csv").read_text())

    def edit(p):
        with open(p, "a") as f:
            f.write(train.splitlines()[1] + "\n")

    with monkeypatch.context() as m:
        _changing_reader(m, folder / "train.csv", edit)
        with pytest.raises(DataError, match="train.csv: changed while it was read"):
            load("aliexpress", data_dir=folder, cache_dir=tmp_path / "c", allow_single_class=True)
    assert not _entries(tmp_path / "c", "aliexpress", "prepared")
    data = load("aliexpress", data_dir=folder, cache_dir=tmp_path / "c", allow_single_class=True)
    rows = len((folder / "train.csv").read_text().splitlines()) - 1
    assert rows > 100 and len(data.train) + len(data.validation) == rows


def test_two_writers_of_one_entry_keep_the_first(tmp_path):
    final = tmp_path / "prepared" / "k"
    first = cache_lib.EntryWriter(final, kind="prepared")
    second = cache_lib.EntryWriter(final, kind="prepared")
    with first:
        first.add("a", (5,), np.int64).write(np.arange(5))
        first.commit({"who": 1})
    with second:
        second.add("a", (6,), np.int64).write(np.arange(6))
        second.commit({"who": 2})
    meta, arrays = cache_lib.read_entry(final, kind="prepared")
    assert meta["who"] == 1 and arrays["a"].tolist() == list(range(5))
    assert [p.name for p in final.parent.iterdir()] == ["k"]
