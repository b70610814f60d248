"""Where datasets are read from and where caches are written.

Loaders take ``data_dir`` (else ``$MTL_DATA_DIR``): the dataset's own folder or a parent
holding it under its usual name (``docs/data.md``, *Where the files go*); nothing is
downloaded at load time. Caches go to ``cache_dir``, else ``$MTL_CACHE_DIR``, else
``~/.cache/mtl``, never next to the raw data.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Iterable

from mtl.data.errors import DataError

ENV_DATA_DIR = "MTL_DATA_DIR"
ENV_CACHE_DIR = "MTL_CACHE_DIR"


def resolve_dataset_dir(
    data_dir: str | os.PathLike | None,
    *,
    dataset: str,
    folder: str,
    has_files,
    how_to_get: str,
    subfolders: bool = False,
) -> pathlib.Path:
    """Finds the folder holding a dataset's files.

    Args:
      data_dir: the argument given by the user, or ``None`` for ``$MTL_DATA_DIR``.
      dataset: the dataset's display name, for messages.
      folder: the dataset's usual folder name under a data root (e.g. ``ali_ccp``).
      has_files: predicate ``Path -> bool``: does this folder hold the files?
      how_to_get: one sentence on where the files come from, for the error.
      subfolders: also look one level below ``data_dir`` and ``data_dir/folder``.
    """
    source = "data_dir"
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_DATA_DIR) or None
        source = f"${ENV_DATA_DIR}"
    if data_dir is None:
        raise DataError(
            f"{dataset}: no data folder given. Pass data_dir=... (e.g. --config.data.data_dir=PATH) "
            f"or set ${ENV_DATA_DIR} to a folder holding the files, or a parent folder with "
            f"{folder}/ inside. {how_to_get}"
        )
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{dataset}: {source}={root} is not a folder. {how_to_get}")
    candidates = [root, root / folder]
    if subfolders:
        candidates += [sub for c in (root, root / folder) if c.is_dir() for sub in sorted(c.iterdir()) if sub.is_dir()]
    for candidate in candidates:
        if candidate.is_dir() and has_files(candidate):
            return candidate
    where = f"{root} or {root / folder}" + (" (or a folder inside them)" if subfolders else "")
    raise DataError(f"{dataset}: no dataset files in {where} ({source}). {how_to_get}")


def cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder for prepared data: ``cache_dir``, ``$MTL_CACHE_DIR`` or ``~/.cache/mtl``."""
    if cache_dir is None or str(cache_dir) == "":
        cache_dir = os.environ.get(ENV_CACHE_DIR) or pathlib.Path.home() / ".cache" / "mtl"
    path = pathlib.Path(cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def fingerprint(paths: Iterable[str | os.PathLike | None], *extra: str) -> str:
    """A short key that changes when any source file (path, size, mtime) or ``extra`` changes."""
    h = hashlib.sha1()
    for p in paths:
        if p is None:
            h.update(b"<none>")
            continue
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}".encode())
    for e in extra:
        h.update(e.encode())
    return h.hexdigest()[:16]
