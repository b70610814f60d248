"""Crash-safe caches of parsed and prepared data: folders of ``.npy`` files, memory-mapped.

Entries live under ``<cache root>/<dataset>/``: ``prepared/<key>/`` holds one prepared
:class:`~mtl.data.base.MultiTaskData` (:func:`cached_dataset`, arrays
``<split>.{numeric,categorical,labels[,users]}``), and the TFDS read-back keeps raw frames
(:func:`mtl.data.frame.cached`). An entry is a folder of ``<array>.npy`` files (numpy's own
format, ``np.load(path, mmap_mode="r")``) and ``meta.json``; ``key`` hashes
:data:`FORMAT_VERSION`, the kind, the loader's arguments and every source file's path, size and
mtime. Writes are atomic (a temporary folder, files flushed, ``meta.json`` last, renamed into
place); a source that changed while read caches nothing; an entry whose checksums fail is moved
aside and rebuilt. See ``docs/data.md``, *Caches*.
"""

from __future__ import annotations

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


@dataclasses.dataclass(frozen=True)
class SourceState:
    """What identifies a source file's content cheaply: absolute path, size, mtime (ns)."""

    path: str
    size: int
    mtime_ns: int

    @staticmethod
    def of(path: str | os.PathLike) -> SourceState:
        st = os.stat(path)
        return SourceState(os.path.abspath(os.fspath(path)), int(st.st_size), int(st.st_mtime_ns))


def check_unchanged(before: Sequence[SourceState]) -> None:
    """Raises a :class:`DataError` if a source file changed since ``before`` was taken."""
    for old in before:
        try:
            new = SourceState.of(old.path)
        except OSError:
            raise DataError("was removed while it was read; nothing was cached", path=old.path) from None
        if new != old:
            mtime = "changed" if new.mtime_ns != old.mtime_ns else "unchanged"
            raise DataError(f"changed while it was read (size {old.size:,} -> {new.size:,} bytes, modification "
                            f"time {mtime}); nothing was cached. Load it again once the file is complete.",
                            path=old.path)  # fmt: skip


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


def entry_key(kind: str, args: Mapping[str, Any], sources: Sequence[SourceState]) -> str:
    """A hex key for an entry of ``kind`` built from ``sources`` with ``args``."""
    key = {"format": FORMAT_VERSION, "kind": kind, "args": _plain(args),
           "sources": [dataclasses.astuple(s) for s in sources]}  # fmt: skip
    return _digest(key)[:24]


def _fsync(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sample_crc(path: pathlib.Path) -> int:
    """CRC32 of ``_SAMPLES`` pages spread over a file (first and last included)."""
    size, crc = os.path.getsize(path), 0
    with open(path, "rb") as f:
        for start in sorted({int(x) for x in np.linspace(0, max(0, size - _PAGE), _SAMPLES)}):
            f.seek(start)
            crc = zlib.crc32(f.read(_PAGE), crc)
    return crc


class ArrayFile:
    """One array's ``.npy`` file, written sequentially a block of rows at a time with plain writes
    (not through a memory map, so that written pages stay out of the process's resident memory)."""

    def __init__(self, path: pathlib.Path, shape, dtype):
        self.path, self.dtype = path, np.dtype(dtype)
        self.file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": tuple(int(s) for s in shape)}  # fmt: skip
        np.lib.format.write_array_header_2_0(self.file, header)

    def write(self, block: np.ndarray) -> None:
        self.file.write(memoryview(np.ascontiguousarray(block, self.dtype).reshape(-1)).cast("B"))

    def close(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def finish(self) -> np.ndarray:
        """The completed array, memory-mapped read-only (a file of the wrong size fails here)."""
        self.close()
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

    def save(self, name: str, array: np.ndarray) -> None:
        array = np.asarray(array)
        self.add(name, array.shape, array.dtype).write(array)

    def close(self) -> dict:
        """Completes every file; returns what :func:`read_entry` checks."""
        for f in self.files.values():
            f.finish()
        return {name: {"size": os.path.getsize(f.path), "crc": _sample_crc(f.path)} for name, f in self.files.items()}


def read_entry(folder: pathlib.Path, *, kind: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of a complete, intact entry, or ``None`` (absent, partial or damaged:
    a damaged entry is moved aside so that the caller rebuilds it)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / META).read_text())
        if meta.pop("checksum", None) != _digest(meta) or (meta["format"], meta["kind"]) != (FORMAT_VERSION, kind):
            raise ValueError("meta.json does not match its checksum, format or kind")
        arrays = {}
        for name, spec in meta["arrays"].items():
            path = folder / f"{name}.npy"
            if os.path.getsize(path) != spec["size"] or _sample_crc(path) != spec["crc"]:
                raise ValueError(f"{path.name}: size or content differs from meta.json")
            arrays[name] = np.load(path, mmap_mode="r")
        return meta, arrays
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        discard(folder)
        return None


def discard(folder: pathlib.Path) -> None:
    """Moves a damaged entry out of the way (renamed, then removed); never raises."""
    trash = folder.with_name(f".tmp-discard-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


class EntryWriter:
    """Writes one entry atomically::

        with EntryWriter(final_folder, kind=...) as w:
            w.pack.save("x", x)
            w.commit(meta)

    Files go to a temporary folder beside ``final_folder``; :meth:`commit` completes the
    arrays, writes ``meta.json`` last, flushes the folder and renames it into place (if
    another process committed the same entry first, theirs is kept). Leaving the block
    without a commit removes the folder.
    """

    def __init__(self, final: pathlib.Path, *, kind: str):
        self.final, self.kind = pathlib.Path(final), kind
        self.final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.final.parent)
        self.folder = self.final.parent / f".tmp-{self.final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir()
        self.pack = PackWriter(self.folder)

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, *exc) -> None:
        for f in self.pack.files.values():
            f.file.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self, meta: Mapping[str, Any]) -> None:
        full = {**_plain(meta), "format": FORMAT_VERSION, "kind": self.kind, "arrays": self.pack.close(),
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


def _remove_stale_temporaries(parent: pathlib.Path) -> None:
    """Removes temporary folders of killed runs (their process is gone, or a day old)."""
    for p in parent.glob(".tmp-*"):
        parts = p.name.split("-")
        pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
        try:
            if pid is None or not _alive(pid) or time.time() - p.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def cached_entry(folder: pathlib.Path, *, kind: str, states: Sequence[SourceState],
                 build: Callable[[PackWriter], Mapping[str, Any]]) -> tuple[dict, dict[str, np.ndarray]]:  # fmt: skip
    """``(meta, arrays)`` of the entry ``folder``, built first with ``build(pack) -> meta`` when absent
    or damaged; a source (``states``) that changes meanwhile raises a :class:`DataError` and
    nothing is written."""
    entry = read_entry(folder, kind=kind)
    if entry is not None:
        return entry
    with EntryWriter(folder, kind=kind) as writer:
        try:
            meta = build(writer.pack)
        finally:
            check_unchanged(states)  # a file that changed mid-read explains odd errors best
        writer.commit({**meta, "sources": [dataclasses.asdict(s) for s in states]})
    entry = read_entry(folder, kind=kind)
    if entry is None:
        raise RuntimeError(f"cache entry {folder} could not be read back after writing it")
    return entry


def cached_dataset(root: pathlib.Path, *, args: Mapping[str, Any], sources: Sequence[str | os.PathLike],
                   build: Callable[[PackWriter], MultiTaskData],
                   extra: Callable[[MultiTaskData], Mapping[str, Any]] | None = None):  # fmt: skip
    """A prepared :class:`~mtl.data.base.MultiTaskData`, memory-mapped from the cache.

    Args:
      root: the dataset's cache folder (``<cache root>/<dataset>``).
      args: every loader argument that changes the result (the key).
      sources: the raw files read (the key; re-checked after building).
      build: ``build(pack) -> MultiTaskData`` writing its split arrays into the
        :class:`PackWriter` ``pack`` (``build_multitask_data(..., out=pack)``).
      extra: optional ``extra(data) -> dict`` of JSON-able facts stored with the entry
        (e.g. the column table a loader prints), returned on every load.

    Returns ``(data, extra)``; ``data.info`` is the JSON form of the built info (tuples
    become lists), identical on the first and on cached loads.
    """
    states = [SourceState.of(p) for p in sources]
    folder = pathlib.Path(root) / "prepared" / entry_key("prepared", args, states)

    def make(pack: PackWriter) -> dict:
        data = build(pack)
        return {"tasks": [dataclasses.asdict(t) for t in data.tasks], "numeric_names": list(data.numeric_names),
                "categorical_names": list(data.categorical_names), "vocab_sizes": [int(v) for v in data.vocab_sizes],
                "info": _plain(data.info), "extra": _plain(extra(data)) if extra else {},
                "args": _plain(args)}  # fmt: skip

    meta, arrays = cached_entry(folder, kind="prepared", states=states, build=make)
    splits = {name: Split(*(arrays.get(f"{name}.{k}") for k in ("numeric", "categorical", "labels", "users")))
              for name in ("train", "validation", "test")}  # fmt: skip
    data = MultiTaskData(
        splits["train"], splits["validation"], splits["test"], tasks=tuple(TaskSpec(**t) for t in meta["tasks"]),
        numeric_names=tuple(meta["numeric_names"]), categorical_names=tuple(meta["categorical_names"]),
        vocab_sizes=tuple(int(v) for v in meta["vocab_sizes"]), info=meta["info"],
    )  # fmt: skip
    return data, meta["extra"]
