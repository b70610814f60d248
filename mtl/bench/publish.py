"""Writing benchmark outputs safely: whole files only, and never a smaller table over a larger one.

Every table and figure is written to a temporary file beside its destination
and moved into place (``os.replace``, atomic on one file system) only once it
is complete, so an interrupted or failing render leaves the previous file.
:func:`losses` says what replacing a table would lose (rows that would
disappear, rows with fewer seeds); ``mtl-bench`` refuses such a replacement
unless asked (``--replace_tables``).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping


def _temporary(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes ``text`` to ``path`` whole (through a temporary file in the same folder)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_figure(fig, path: str | os.PathLike, dpi: int) -> pathlib.Path:
    """Saves a matplotlib ``Figure`` to ``path`` whole (the format from its suffix)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def losses(saved: Mapping[str, int], new: Mapping[str, int]) -> list[str]:
    """What replacing a table holding ``saved`` (``{row: seeds}``) by one of ``new`` would lose:
    one line per row that would disappear or have fewer seeds (empty: nothing is lost)."""
    out = []
    for row, seeds in sorted(saved.items()):
        if row not in new:
            out.append(f"{row} ({seeds} seeds) would disappear")
        elif new[row] < seeds:
            out.append(f"{row} would have {new[row]} seeds instead of {seeds}")
    return out
