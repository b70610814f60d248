"""The one exception every data loader raises for bad input data."""

from __future__ import annotations

import os


class DataError(ValueError):
    """Input data that cannot be loaded as asked. The message starts with where the problem is, as far
    as it is known (``data.csv, line 7, column 'click': label value '2' is not 0 or 1 ...``; ``docs/data.md``,
    *Errors*); the same facts are kept as attributes ``path``, ``line`` (1-based; minus the record's
    1-based number where the file's lines are not counted, which the message says as ``record N``) and
    ``column``."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, line: int | None = None,
                 column: str | None = None):  # fmt: skip
        where = [os.fspath(path)] if path is not None else []
        where += [] if line is None else [f"line {line}" if line > 0 else f"record {-line} after the header"]
        where += [f"column {column!r}"] if column is not None else []
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.column = column
