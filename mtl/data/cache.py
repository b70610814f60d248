"""Crash-safe caches of prepared data: folders of ``.npy`` files and ``meta.json``, memory-mapped.

:func:`cached_dataset` keeps prepared :class:`~mtl.data.base.MultiTaskData` (``<dataset>/prepared/<key>/``).
Writes are atomic, a source that changed while read caches nothing, a damaged entry is rebuilt:
``docs/data.md``, *Caches*.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mtl.data.base import MultiTaskData, Split, TaskSpec
from mtl.data.errors import DataError

#: Bumped whenever the layout or the meaning of cached arrays changes.
FORMAT_VERSION = 3
META = "meta.json"
_SAMPLES, _PAGE = 8, 4096  # pages checksummed per array file
_STALE_TMP_SECONDS = 24 * 3600


def source_state(path: str | os.PathLike) -> tuple[str, int, int]:
    """What identifies a source file's content cheaply: ``(absolute path, size, mtime in ns)``."""
    st = os.stat(path)
    return os.path.abspath(os.fspath(path)), int(st.st_size), int(st.st_mtime_ns)


def check_unchanged(before: Sequence[tuple[str, int, int]]) -> None:
    """Raises a :class:`DataError` if a source file changed since its :func:`source_state` ``before``."""
    for path, size, mtime_ns in before:
        try:
            _, new_size, new_mtime_ns = source_state(path)
        except OSError:
            raise DataError("was removed while it was read; nothing was cached. Load it again once it is back.",
                            path=path) from None  # fmt: skip
        if (new_size, new_mtime_ns) != (size, mtime_ns):
            mtime = "changed" if new_mtime_ns != mtime_ns else "unchanged"
            raise DataError(f"changed while it was read (size {size:,} -> {new_size:,} bytes, modification "
                            f"time {mtime}); nothing was cached. Load it again once the file is complete.",
                            path=path)  # fmt: skip


def _plain(x):
    """Arguments as JSON-able values (paths, tuples and numpy scalars included)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x.item() if isinstance(x, np.generic) else x


def _digest(x) -> str:
    return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()


def _fsync(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sample_crc(path: pathlib.Path) -> int:
    """CRC32 of ``_SAMPLES`` pages spread over a file (first and last included)."""
    crc = 0
    with open(path, "rb") as f:
        for start in np.unique(np.linspace(0, max(0, os.path.getsize(path) - _PAGE), _SAMPLES).astype(np.int64)):
            f.seek(int(start))
            crc = zlib.crc32(f.read(_PAGE), crc)
    return crc


class ArrayFile:
    """One array's ``.npy`` file, written a block of rows at a time with plain writes (not through a
    memory map, so that written pages stay out of the process's resident memory)."""

    def __init__(self, path: pathlib.Path, shape, dtype):
        self.path, self.dtype, self.file = path, np.dtype(dtype), open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": tuple(int(s) for s in shape)}  # fmt: skip
        np.lib.format.write_array_header_2_0(self.file, header)

    def write(self, block: np.ndarray) -> None:
        self.file.write(memoryview(np.ascontiguousarray(block, self.dtype).reshape(-1)).cast("B"))

    def finish(self) -> np.ndarray:
        """The completed array, flushed and memory-mapped read-only (a file of the wrong size fails here)."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        return np.load(self.path, mmap_mode="r")


class PackWriter:
    """The arrays of one entry, one :class:`ArrayFile` each."""

    def __init__(self, folder: pathlib.Path):
        self.folder, self.files = pathlib.Path(folder), {}

    def add(self, name: str, shape, dtype) -> ArrayFile:
        if name in self.files:
            raise ValueError(f"array {name!r} is already in the pack")
        self.files[name] = ArrayFile(self.folder / f"{name}.npy", shape, dtype)
        return self.files[name]

    def close(self) -> dict:
        """Completes every file; returns what :func:`read_entry` checks."""
        for f in self.files.values():
            f.finish()
        return {name: {"size": os.path.getsize(f.path), "crc": _sample_crc(f.path)} for name, f in self.files.items()}


def read_entry(folder: pathlib.Path, *, kind: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of a complete, intact entry, or ``None`` (absent, partial or damaged:
    a damaged entry is moved aside, then removed, so that the caller rebuilds it)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / META).read_text())
        if meta.pop("checksum", None) != _digest(meta) or (meta["format"], meta["kind"]) != (FORMAT_VERSION, kind):
            raise ValueError("meta.json does not match its checksum, format or kind")
        for name, spec in meta["arrays"].items():
            path = folder / f"{name}.npy"
            if os.path.getsize(path) != spec["size"] or _sample_crc(path) != spec["crc"]:
                raise ValueError(f"{path.name}: size or content differs from meta.json")
        return meta, {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        trash = folder.with_name(f".tmp-discard-{folder.name}-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(OSError):
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return None


class EntryWriter(PackWriter, contextlib.AbstractContextManager):
    """Writes one entry atomically: inside ``with EntryWriter(final, kind=...) as w``, arrays go through ``w``
    (a :class:`PackWriter`) into a temporary folder beside ``final`` (removed when the block is left without a
    commit); :meth:`commit` completes the arrays, writes ``meta.json`` last, flushes and renames the folder into
    place (if another process committed the same entry first, theirs is kept)."""

    def __init__(self, final: pathlib.Path, *, kind: str):
        self.final, self.kind = pathlib.Path(final), kind
        self.final.parent.mkdir(parents=True, exist_ok=True)
        for p in self.final.parent.glob(".tmp-*"):  # temporaries of killed runs: their process is gone, or a day old
            pid = p.name.split("-")[-2]
            with contextlib.suppress(OSError):
                if not pid.isdigit() or not _alive(int(pid)) or time.time() - p.stat().st_mtime > _STALE_TMP_SECONDS:
                    shutil.rmtree(p, ignore_errors=True)
        super().__init__(self.final.parent / f".tmp-{self.final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self.folder.mkdir()

    def __exit__(self, *exc) -> None:
        for f in self.files.values():
            f.file.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self, meta: Mapping[str, Any]) -> None:
        full = {**_plain(meta), "format": FORMAT_VERSION, "kind": self.kind, "arrays": self.close(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        full["checksum"] = _digest(full)
        (self.folder / META).write_text(json.dumps(full, indent=1, sort_keys=True))
        _fsync(self.folder / META)
        _fsync(self.folder)
        try:
            os.rename(self.folder, self.final)
        except OSError:  # the final folder exists: another process committed first (keep theirs), or junk
            if read_entry(self.final, kind=self.kind) is not None:
                return
            os.rename(self.folder, self.final)  # the junk was moved aside by read_entry
        _fsync(self.final.parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:  # PermissionError: alive, another user's
        return not isinstance(e, ProcessLookupError)
    return True


def cached_dataset(root: pathlib.Path, *, args: Mapping[str, Any], sources: Sequence[str | os.PathLike],
                   build: Callable[[PackWriter], MultiTaskData],
                   extra: Callable[[MultiTaskData], Mapping[str, Any]] | None = None):  # fmt: skip
    """``(data, extra)``: the :class:`~mtl.data.base.MultiTaskData` ``build(pack)`` writes into ``pack``
    (``build_multitask_data(..., out=pack)``) from the files ``sources`` with the loader arguments
    ``args``, memory-mapped from the entry ``root/prepared/<key>``, and the JSON-able facts
    ``extra(data)`` stored with it. ``data.info`` is in JSON form (tuples become lists) on every load.
    """
    states = [source_state(p) for p in sources]
    key = {"format": FORMAT_VERSION, "kind": "prepared", "args": _plain(args), "sources": states}
    folder = pathlib.Path(root) / "prepared" / _digest(key)[:24]
    entry = read_entry(folder, kind="prepared")
    if entry is None:
        with EntryWriter(folder, kind="prepared") as writer:
            try:
                data = build(writer)
            finally:
                check_unchanged(states)  # a file that changed mid-read explains odd errors best
            writer.commit({"tasks": [dataclasses.asdict(t) for t in data.tasks], "numeric_names": data.numeric_names,
                           "categorical_names": data.categorical_names, "vocab_sizes": data.vocab_sizes,
                           "info": data.info, "extra": extra(data) if extra else {}, "args": args,
                           "sources": [dict(zip(("path", "size", "mtime_ns"), s)) for s in states]})  # fmt: skip
        entry = read_entry(folder, kind="prepared")
    if entry is None:
        raise RuntimeError(f"cache entry {folder} could not be read back after writing it")
    meta, arrays = entry
    splits = [Split(*(arrays.get(f"{name}.{k}") for k in ("numeric", "categorical", "labels", "users")))
              for name in ("train", "validation", "test")]  # fmt: skip
    data = MultiTaskData(*splits, tasks=tuple(TaskSpec(**t) for t in meta["tasks"]),
                         numeric_names=tuple(meta["numeric_names"]), categorical_names=tuple(meta["categorical_names"]),
                         vocab_sizes=tuple(meta["vocab_sizes"]), info=meta["info"])  # fmt: skip
    return data, meta["extra"]
