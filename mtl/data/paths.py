"""Where datasets are read from (``data_dir`` or ``$MTL_DATA_DIR``; nothing is downloaded at load time) and
where caches are written (``cache_dir``, ``$MTL_CACHE_DIR`` or ``~/.cache/mtl``, never beside the raw data):
``docs/data.md``, *Where the files go*."""

from __future__ import annotations

import os
import pathlib

from mtl.data.errors import DataError

ENV_DATA_DIR = "MTL_DATA_DIR"
ENV_CACHE_DIR = "MTL_CACHE_DIR"


def candidate_dirs(root: pathlib.Path | None, folder: str, *, subfolders: bool = True) -> list[pathlib.Path]:
    """The folders that may hold a dataset: ``root``, ``root/folder`` and (``subfolders``) the folders in them."""
    tops = [] if root is None else [d for d in (root, root / folder) if d.is_dir()]
    return tops + ([sub for d in tops for sub in sorted(d.iterdir()) if sub.is_dir()] if subfolders else [])


def resolve_dataset_dir(data_dir: str | os.PathLike | None, *, dataset: str, folder: str, has_files,
                        how_to_get: str, subfolders: bool = False, has_sample=None) -> pathlib.Path:  # fmt: skip
    """The first of :func:`candidate_dirs` for which ``has_files(path)`` holds; ``data_dir`` ``None``
    or empty: ``$MTL_DATA_DIR``. Errors name ``dataset``, say ``how_to_get`` the files and, when
    ``has_sample(path)`` holds for a candidate, that the public sample is there."""
    source = "data_dir"
    if data_dir is None or str(data_dir) == "":
        data_dir, source = os.environ.get(ENV_DATA_DIR) or None, f"${ENV_DATA_DIR}"
    if data_dir is None:
        raise DataError(f"{dataset}: no data folder given. Pass data_dir=... (e.g. --config.data.data_dir=PATH) or set "
                        f"${ENV_DATA_DIR} to a folder holding the files, or a parent folder with {folder}/ inside. "
                        f"{how_to_get}")  # fmt: skip
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{dataset}: {source}={root} is not a folder. {how_to_get}")
    candidates = candidate_dirs(root, folder, subfolders=subfolders)
    found = next((d for d in candidates if has_files(d)), None)
    if found is None:
        where = f"{root} or {root / folder}" + (" (or a folder inside them)" if subfolders else "")
        hint = " Only the small public samples are there: pass sample=True to use them."
        raise DataError(f"{dataset}: no dataset files in {where} ({source}). {how_to_get}"
                        + (hint if has_sample and any(map(has_sample, candidates)) else ""))  # fmt: skip
    return found


def cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """The folder for prepared data: ``cache_dir``, ``$MTL_CACHE_DIR`` or ``~/.cache/mtl``."""
    if cache_dir is None or str(cache_dir) == "":
        cache_dir = os.environ.get(ENV_CACHE_DIR) or pathlib.Path.home() / ".cache" / "mtl"
    path = pathlib.Path(cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
