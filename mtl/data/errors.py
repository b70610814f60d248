"""The one exception every data loader raises for bad input data."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Input data that cannot be loaded as asked.

    The message starts with where the problem is, as far as it is known: the
    file, the 1-based line number in that file, and the column, e.g.

        data.csv, line 7, column 'click': label value '2' is not 0 or 1 (binary task)

    The same facts are kept as attributes ``path``, ``line`` and ``column``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        column: str | None = None,
    ):
        where = []
        if path is not None:
            where.append(os.fspath(path))
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.column = column
