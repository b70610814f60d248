"""Crash-safe caches of parsed and prepared data: memory-mappable column packs.

Two kinds of entries live under ``<cache root>/<dataset>/`` (see :mod:`mtl.data.paths`):

* ``frames/<name>-<key>/``: one source file parsed into columns
  (:func:`mtl.data.frame.cached`), so a loader run with other arguments (seed,
  tasks, ...) re-encodes without re-parsing;
* ``prepared/<key>/``: one prepared :class:`~mtl.data.base.MultiTaskData`
  (:func:`cached_dataset`): the arrays ``<split>.{numeric,categorical,labels[,users]}``.
  A repeated load memory-maps them (read-only) instead of reading them: rows come
  from disk when first touched.

An entry is a folder holding ``arrays.bin``, every array C-contiguous at a
4096-byte-aligned offset (:class:`PackWriter`), and ``meta.json`` naming each
array's offset, dtype and shape (so ``np.memmap(path, dtype, "r", offset, shape)``
reads one without this module).

``key`` hashes :data:`FORMAT_VERSION`, the entry kind, the loader's arguments and
every source file's absolute path, size and modification time (ns).

Writes are atomic: an entry is written into a temporary folder beside its final
place (``.tmp-...``), every file is flushed to disk (``fsync``), ``meta.json`` is
written last, and the folder is renamed into place. A source file whose size or
modification time changed while it was read raises a :class:`DataError` and
writes nothing. Reading an entry checks ``meta.json`` (its own checksum), the
pack's size and every array's place against it, and a CRC32 of pages sampled
through each array; an entry that fails is moved aside and rebuilt, never trusted.
(A flipped bit in an unsampled page is not detected: checking every byte would
cost a full read, which a memory-mapped load avoids.)
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import shutil
import threading
import time
import uuid
import zlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from mtl.data.base import MultiTaskData, Split, TaskSpec
from mtl.data.errors import DataError

#: Bumped whenever the layout or the meaning of cached arrays changes.
FORMAT_VERSION = 2
META = "meta.json"
PACK = "arrays.bin"
#: Every array starts at a multiple of this many bytes in the pack.
ALIGN = 4096
_SAMPLES = 8  # pages checksummed per array file
_PAGE = 4096
_STALE_TMP_SECONDS = 24 * 3600


# ---------------------------------------------------------------- source files


@dataclasses.dataclass(frozen=True)
class SourceState:
    """What identifies a source file's content cheaply: absolute path, size, mtime (ns)."""

    path: str
    size: int
    mtime_ns: int

    @staticmethod
    def of(path: str | os.PathLike) -> "SourceState":
        st = os.stat(path)
        return SourceState(os.path.abspath(os.fspath(path)), int(st.st_size), int(st.st_mtime_ns))


def source_states(paths: Iterable[str | os.PathLike]) -> list[SourceState]:
    return [SourceState.of(p) for p in paths]


def check_unchanged(before: Sequence[SourceState]) -> None:
    """Raises a :class:`DataError` if a source file changed since ``before`` was taken."""
    for old in before:
        try:
            new = SourceState.of(old.path)
        except OSError:
            raise DataError("was removed while it was read; nothing was cached", path=old.path) from None
        if new != old:
            raise DataError(
                f"changed while it was read (size {old.size:,} -> {new.size:,} bytes, modification time "
                f"{'changed' if new.mtime_ns != old.mtime_ns else 'unchanged'}); nothing was cached. "
                "Load it again once the file is complete.",
                path=old.path,
            )


def entry_key(kind: str, args: Mapping[str, Any], sources: Sequence[SourceState]) -> str:
    """A hex key for an entry of ``kind`` built from ``sources`` with ``args``."""
    payload = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "args": _plain(args),
        "sources": [dataclasses.astuple(s) for s in sources],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def _plain(x):
    """Arguments as JSON-able values (paths and tuples included)."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    return x


# ---------------------------------------------------------------- background work


class Pipeline:
    """Runs ``work(item)`` for submitted items in order on one worker thread, at most
    ``depth`` items ahead; the first exception is raised in the caller (at the next submit or
    at the end). pyarrow's parsing and numpy/pyarrow conversions release the GIL, so parsing
    the next block overlaps with converting this one."""

    def __init__(self, work, depth: int = 3):
        self.work, self.depth = work, depth
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mtl-convert")
        self.pending: collections.deque = collections.deque()

    def submit(self, item) -> None:
        self.pending.append(self.pool.submit(self.work, item))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    def drain(self) -> None:
        """Waits for every submitted item (raising the first error)."""
        while self.pending:
            self.pending.popleft().result()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            while self.pending:
                future = self.pending.popleft()
                if kind is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self.pool.shutdown(wait=True)



# ---------------------------------------------------------------- the array pack


def _fsync(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Region:
    """One array's place in a pack, written sequentially block by block."""

    def __init__(self, pack: "PackWriter", name: str, shape: tuple[int, ...], dtype: np.dtype, offset: int):
        self.pack, self.name, self.shape, self.dtype, self.offset = pack, name, shape, dtype, offset
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self.written = 0

    def write(self, block: np.ndarray) -> None:
        if self.pack.writer is not None:  # on the pack's writer thread, in order
            self.pack.writer.submit((self, np.ascontiguousarray(block, self.dtype)))
            return
        self._write(block)

    def _write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, self.dtype)
        if block.nbytes == 0:
            return
        data = memoryview(block.reshape(-1)).cast("B")
        if self.written + len(data) > self.nbytes:
            raise ValueError(f"{self.name}: more data than its shape {self.shape} holds")
        while len(data):
            n = os.pwrite(self.pack.fd, data, self.offset + self.written)
            self.written += n
            data = data[n:]

    def array(self) -> np.ndarray:
        """The written region, memory-mapped read-only (once complete)."""
        self.pack.flush()
        if self.written != self.nbytes:
            raise ValueError(f"{self.name}: {self.written} of {self.nbytes} bytes written")
        if self.nbytes == 0:
            return np.zeros(self.shape, self.dtype)
        return np.memmap(self.pack.path, self.dtype, "r", offset=self.offset, shape=self.shape)


class PackWriter:
    """Arrays in one file (``arrays.bin``), each C-contiguous and aligned to :data:`ALIGN` bytes.

    Writes go through ``pwrite``, not a memory map, so written pages stay out of the
    process's resident memory. :meth:`close` checks every region is complete, adds
    checksums of sampled pages and flushes the file to disk.
    """

    def __init__(self, path: pathlib.Path):
        self.path = pathlib.Path(path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.size = 0
        self.regions: dict[str, Region] = {}
        self.writer = None

    def write_behind(self) -> "PackWriter":
        """Writes blocks on a background thread from now on (``Region.write`` returns at once;
        :meth:`flush` waits), so that encoding the next block overlaps with writing this one."""
        if self.writer is None:
            self.writer = Pipeline(lambda item: item[0]._write(item[1]), depth=2)
        return self

    def flush(self) -> None:
        """Waits for background writes (raising their error, if any)."""
        if self.writer is not None:
            self.writer.drain()

    def add(self, name: str, shape, dtype) -> Region:
        if name in self.regions:
            raise ValueError(f"array {name!r} is already in the pack")
        region = Region(self, name, tuple(int(x) for x in shape), np.dtype(dtype), _align(self.size))
        self.size = region.offset + region.nbytes
        self.regions[name] = region
        return region

    def save(self, name: str, array: np.ndarray, *, block_rows: int = 1 << 20) -> None:
        array = np.asarray(array)
        region = self.add(name, array.shape, array.dtype)
        if array.ndim == 0:
            region.write(array.reshape(1))
        else:
            for start in range(0, array.shape[0], block_rows):
                region.write(array[start : start + block_rows])

    def close(self) -> dict:
        """Completes the file; returns what :func:`open_pack` checks."""
        try:
            if self.writer is not None:
                writer, self.writer = self.writer, None
                writer.__exit__(None, None, None)
            for r in self.regions.values():
                if r.written != r.nbytes:
                    raise ValueError(f"{r.name}: {r.written} of {r.nbytes} bytes written")
            os.ftruncate(self.fd, self.size)
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
        arrays = {
            name: {"offset": r.offset, "shape": list(r.shape), "dtype": r.dtype.str, "bytes": r.nbytes,
                   "crc": _sample_crc(self.path, r.offset, r.nbytes)}
            for name, r in self.regions.items()
        }  # fmt: skip
        return {"file": self.path.name, "size": self.size, "arrays": arrays}


def _sample_crc(path: pathlib.Path, offset: int, nbytes: int) -> int:
    """CRC32 of ``_SAMPLES`` pages spread over an array's bytes (first and last included)."""
    crc = 0
    if nbytes == 0:
        return crc
    starts = sorted({int(x) for x in np.linspace(0, max(0, nbytes - _PAGE), _SAMPLES)})
    with open(path, "rb") as f:
        for s in starts:
            f.seek(offset + s)
            crc = zlib.crc32(f.read(min(_PAGE, nbytes - s)), crc)
    return crc


def open_pack(folder: pathlib.Path, pack: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a pack, memory-mapped read-only, after checking the file against ``pack``
    (size, sampled checksums; else ``ValueError``).

    Each array is its own mapping, so dropping one array releases its pages.
    """
    path = folder / pack["file"]
    size = os.path.getsize(path)
    if size != pack["size"]:
        raise ValueError(f"{path.name}: {size} bytes, expected {pack['size']}")
    arrays = {}
    for name, spec in pack["arrays"].items():
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes != spec["bytes"] or spec["offset"] % ALIGN or spec["offset"] + nbytes > size:
            raise ValueError(f"{name}: inconsistent place in {path.name}")
        if _sample_crc(path, spec["offset"], nbytes) != spec["crc"]:
            raise ValueError(f"{name}: content checksum differs from meta.json")
        if nbytes == 0:
            arrays[name] = np.zeros(shape, dtype)
        else:
            arrays[name] = np.memmap(path, dtype, "r", offset=spec["offset"], shape=shape)
    return arrays


# ---------------------------------------------------------------- entries


def _meta_checksum(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_entry(folder: pathlib.Path, *, kind: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of a complete, intact entry, or ``None`` (absent, partial or corrupt:
    a damaged entry is moved aside so that the caller rebuilds it)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("checksum") != _meta_checksum(meta):
            raise ValueError("meta.json checksum mismatch")
        if meta.get("format") != FORMAT_VERSION or meta.get("kind") != kind:
            raise ValueError(f"format {meta.get('format')} / kind {meta.get('kind')}")
        return meta, open_pack(folder, meta["pack"])
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
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
    """Writes one entry atomically; use as a context manager::

        with EntryWriter(final_folder, kind=...) as w:
            w.pack.save("x", x)
            w.commit(meta)

    Files go to a temporary folder beside ``final_folder``; :meth:`commit` completes
    the array pack, writes ``meta.json`` (describing the pack) last, flushes the
    folder and renames it into place. Leaving the block without a commit removes
    the folder.
    """

    def __init__(self, final: pathlib.Path, *, kind: str):
        self.final = pathlib.Path(final)
        self.kind = kind
        self.final.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.final.parent)
        self.folder = self.final.parent / f".tmp-{self.final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir()
        self.pack = PackWriter(self.folder / PACK)
        self.committed = False

    def __enter__(self) -> "EntryWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            if self.pack.writer is not None:
                self.pack.writer.__exit__(RuntimeError, None, None)  # drop queued writes
                self.pack.writer = None
            try:
                os.close(self.pack.fd)
            except OSError:
                pass
        if self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self, meta: Mapping[str, Any]) -> None:
        pack = self.pack.close()
        self.committed = True
        full = {**_plain(meta), "format": FORMAT_VERSION, "kind": self.kind, "pack": pack,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
        full["checksum"] = _meta_checksum(full)
        meta_path = self.folder / META
        meta_path.write_text(json.dumps(full, indent=1, sort_keys=True))
        _fsync(meta_path)
        _fsync(self.folder)
        try:
            os.rename(self.folder, self.final)
        except OSError:  # the final folder exists: another process committed first (keep theirs) or junk
            if read_entry(self.final, kind=self.kind) is not None:
                return
            os.rename(self.folder, self.final)  # the junk was moved aside by read_entry
        _fsync(self.final.parent)


def _remove_stale_temporaries(parent: pathlib.Path) -> None:
    """Removes temporary folders left by killed runs (their process is gone, or a day old)."""
    now = time.time()
    for p in parent.glob(".tmp-*"):
        try:
            parts = p.name.split("-")
            pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
            alive = pid is not None and _process_alive(pid)
            if not alive or now - p.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_entry(
    folder: pathlib.Path,
    *,
    kind: str,
    sources: Sequence[SourceState],
    build: Callable[[PackWriter], Mapping[str, Any]],
    read_back: bool = True,
) -> tuple[dict, dict[str, np.ndarray]] | None:
    """Builds an entry with ``build(pack) -> meta`` (writing its arrays into ``pack``) and
    commits it, unless a source changed meanwhile (then a :class:`DataError`, and nothing
    is written). Returns the entry read back (``read_back``)."""
    with EntryWriter(folder, kind=kind) as writer:
        try:
            meta = build(writer.pack)
        except DataError:
            check_unchanged(sources)  # a file that changed mid-read explains odd errors best
            raise
        check_unchanged(sources)
        writer.commit(meta)
    if not read_back:
        return None
    entry = read_entry(folder, kind=kind)
    if entry is None:
        raise RuntimeError(f"cache entry {folder} could not be read back after writing it")
    return entry


_DEFERRED: list[tuple[threading.Thread, list]] = []
_DEFERRED_LOCK = threading.Lock()


def defer(job: Callable[[], Any]) -> None:
    """Runs ``job`` (writing a cache entry) on a background thread; :func:`wait_for_deferred`
    waits for it. The interpreter also waits for it at exit (the thread is not a daemon)."""
    errors: list = []

    def run():
        try:
            job()
        except BaseException as e:  # reported by wait_for_deferred
            errors.append(e)

    thread = threading.Thread(target=run, name="mtl-cache-writer")
    thread.start()
    with _DEFERRED_LOCK:
        _DEFERRED.append((thread, errors))


def wait_for_deferred() -> None:
    """Waits for background cache writes. A write that failed leaves no entry (only a
    warning: the cache is an optimisation, the data already loaded is intact)."""
    with _DEFERRED_LOCK:
        pending = list(_DEFERRED)
        _DEFERRED.clear()
    for thread, errors in pending:
        thread.join()
        for e in errors:
            logging.warning("mtl.data: a column cache entry was not written: %s: %s", type(e).__name__, e)


# ---------------------------------------------------------------- prepared datasets


def cached_dataset(
    root: pathlib.Path,
    *,
    args: Mapping[str, Any],
    sources: Sequence[str | os.PathLike],
    build: Callable[[pathlib.Path], Any],
    extra: Callable[[Any], Mapping[str, Any]] | None = None,
):
    """A prepared :class:`~mtl.data.base.MultiTaskData`, memory-mapped from the cache.

    Args:
      root: the dataset's cache folder (``<cache root>/<dataset>``).
      args: every loader argument that changes the result (the key).
      sources: the raw files read (the key; re-checked after building).
      build: ``build(pack) -> MultiTaskData`` writing its split arrays into the
        :class:`PackWriter` ``pack`` (``build_multitask_data(..., out=pack)``).
      extra: optional ``extra(data) -> dict`` of JSON-able facts stored with the
        entry (e.g. the column table a loader prints), returned on every load.

    Returns ``(data, extra)``; ``data.info`` is the JSON form of the built info
    (tuples become lists), identical on the first and on cached loads.
    """
    states = source_states(sources)
    folder = pathlib.Path(root) / "prepared" / entry_key("prepared", args, states)

    def make(pack: PackWriter) -> dict:
        data = build(pack)
        return {
            "tasks": [dataclasses.asdict(t) for t in data.tasks],
            "numeric_names": list(data.numeric_names),
            "categorical_names": list(data.categorical_names),
            "vocab_sizes": [int(v) for v in data.vocab_sizes],
            "info": _plain(data.info),
            "extra": _plain(extra(data)) if extra else {},
            "args": _plain(args),
            "sources": [dataclasses.asdict(s) for s in states],
        }

    entry = read_entry(folder, kind="prepared")
    try:
        if entry is None:
            entry = build_entry(folder, kind="prepared", sources=states, build=make)
    finally:
        wait_for_deferred()
    meta, arrays = entry
    splits = {}
    for name in ("train", "validation", "test"):
        splits[name] = Split(
            arrays[f"{name}.numeric"], arrays[f"{name}.categorical"], arrays[f"{name}.labels"],
            arrays.get(f"{name}.users"),
        )  # fmt: skip
    data = MultiTaskData(
        splits["train"], splits["validation"], splits["test"],
        tasks=tuple(TaskSpec(**t) for t in meta["tasks"]),
        numeric_names=tuple(meta["numeric_names"]),
        categorical_names=tuple(meta["categorical_names"]),
        vocab_sizes=tuple(int(v) for v in meta["vocab_sizes"]),
        info=meta["info"],
    )  # fmt: skip
    return data, meta["extra"]


__all__ = [
    "FORMAT_VERSION",
    "EntryWriter",
    "PackWriter",
    "SourceState",
    "build_entry",
    "cached_dataset",
    "check_unchanged",
    "entry_key",
    "open_pack",
    "read_entry",
    "source_states",
]
