"""Any delimited text file with a header as a multi-task dataset.

    data = mtl.data.load("tabular", path="clicks.csv", label_columns="click,purchase")

or from the command line::

    python -m mtl.train --config=experiments/configs/tabular.py \\
        --config.data.path=clicks.csv --config.data.label_columns=click,purchase --workdir=/tmp/run

What it does, in order:

1. Reads ``path`` (and ``validation_path`` / ``test_path`` when given) with
   :mod:`mtl.data.delimited` (pyarrow's CSV reader; quoting, line and value rules
   there). ``delimiter=""`` detects one of ``, \\t ; |`` from the
   first lines; a given delimiter that leaves the header as one column while
   another candidate would split it is an error that names the likely delimiter.
   Fields are stripped of surrounding whitespace.
2. Labels: ``label_columns``; those in ``regression_columns`` are real-valued,
   the others binary and must be 0 or 1 (``0.0``/``1.0`` accepted).
3. Features: every other column except ``drop_columns``. ``categorical_columns``
   and ``numeric_columns`` fix a column's type; the rest are inferred (and printed
   as a table): numeric when every non-missing value parses as a number and the
   values are not all integers, or there are more than ``max_categorical_distinct``
   distinct integers; categorical otherwise.
4. Missing values (empty, ``NA``, ``N/A``, ``nan``, ``null``, ``none``, ``?``, in
   lower, UPPER, Capitalized or Title case): a numeric one becomes the training mean (optionally with a 0/1
   ``<name>:missing`` column, ``missing_indicators=True``); a categorical one is
   the token ``<missing>``. A missing label is an error.
5. Splits: a ``default_rng(seed)`` permutation of the rows cut by the ``split``
   fractions (train, validation, test); or the given files: with both
   ``validation_path`` and ``test_path`` the main file is all training data; with
   one of them the main file is cut into train and the other split in the ratio
   of their fractions.
6. Vocabularies (id 0 = out of vocabulary), hashing (``hash_buckets``) and
   numeric scaling from the training split only (:mod:`mtl.data.preprocess`).
   Regression labels are standardised with training statistics too
   (``standardize_labels=True``, the default); the tasks record the mean and
   standard deviation that map them back to the original units.
7. ``user_column`` (optional): any column; each split then carries ``users``, the
   row's user code (the same value has the same code in every split and file;
   a missing value is one user of its own), for per-user metrics (GAUC). The
   column stays a feature unless it is in ``drop_columns``.

The prepared splits are cached under ``cache_dir`` (default ``$MTL_CACHE_DIR``
or ``~/.cache/mtl``), keyed by the files and every argument; a repeated load
memory-maps them and prints the same column table.

Every problem raises :class:`~mtl.data.errors.DataError` naming the file, the
1-based line and the column.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from mtl.data import paths
from mtl.data.base import MultiTaskData, TaskSpec
from mtl.data.cache import cached_dataset
from mtl.data.delimited import (  # noqa: F401 (re-exported)
    CANDIDATE_DELIMITERS,
    MISSING_VALUES,
    Column,
    Header,
    Table,
    check_structure,
    delimiter_name,
    infer_column_type,
    missing_mask,
    number_column,
    read_columns,
    read_header,
)
from mtl.data.errors import DataError
from mtl.data.frame import Frame, concat_factors, concat_frames
from mtl.data.preprocess import (
    MISSING_TOKEN,
    build_multitask_data,
    parse_fractions,
    permutation_split,
    split_list,
)

DATASET = "tabular"


def _missing_column_error(path: str, names: Sequence[str], header: Sequence[str], role: str) -> DataError:
    available = ", ".join(header)
    return DataError(f"{role} {list(names)} not in the header; available columns: {available}", path=path, line=1)


def format_column_table(rows: list[tuple[str, str, str, str]]) -> str:
    """A plain-text table of ``(column, role, decided by, detail)`` rows."""
    head = ("column", "role", "decided by", "detail")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*r) for r in rows]
    return "\n".join(out)


def load_tabular(
    *,
    path: str = "",
    label_columns: str | Sequence[str] = "",
    regression_columns: str | Sequence[str] = "",
    categorical_columns: str | Sequence[str] = "",
    numeric_columns: str | Sequence[str] = "",
    drop_columns: str | Sequence[str] = "",
    delimiter: str = "",
    split: str | Sequence[float] = "0.8,0.1,0.1",
    seed: int = 0,
    validation_path: str = "",
    test_path: str = "",
    hash_buckets: int = 0,
    hash_threshold: int | None = None,
    missing_indicators: bool = False,
    max_categorical_distinct: int = 50,
    allow_single_class: bool = False,
    standardize_labels: bool = True,
    user_column: str = "",
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> MultiTaskData:
    """Loads a delimited file as a multi-task dataset; see the module docstring.

    Args:
      path: the data file (the training file when ``validation_path`` and
        ``test_path`` are both given).
      label_columns: task label columns, comma-separated or a list, in task order.
      regression_columns: the labels that are real-valued (the others are binary 0/1).
      categorical_columns, numeric_columns: force a feature column's type.
      drop_columns: columns that are neither labels nor features (ids, leaks).
      delimiter: one character, or ``""`` to detect among ``, \\t ; |``.
      split: train, validation, test fractions (comma-separated or a sequence).
      seed: seeds the row permutation of the split.
      validation_path, test_path: optional separate files with the same columns.
      hash_buckets: if > 0, a categorical column with more than ``hash_threshold``
        (default ``hash_buckets``) distinct training values is hashed into this many ids.
      missing_indicators: add ``<name>:missing`` 0/1 columns for numeric columns
        with missing training values.
      max_categorical_distinct: integer-valued columns with more distinct values
        than this are inferred numeric.
      allow_single_class: allow a binary task with one class in some split.
      standardize_labels: store regression labels as ``(y - mean) / std`` with
        training statistics (recorded in the tasks); ``False`` keeps raw values.
      user_column: a column whose values identify users (``Split.users``), or ``""``.
      cache_dir: where the prepared splits are cached (default ``$MTL_CACHE_DIR``
        or ``~/.cache/mtl``).
      verbose: print the column table.
    """
    if not path:
        raise DataError(
            "tabular: no data file given; pass path=FILE (on the command line --config.data.path=FILE)"
        )
    labels = split_list(label_columns)
    if not labels:
        raise DataError(
            "tabular: no label columns given; pass label_columns='a,b' (--config.data.label_columns=a,b)", path=path
        )
    regression = split_list(regression_columns)
    forced_cat, forced_num = split_list(categorical_columns), split_list(numeric_columns)
    dropped = split_list(drop_columns)
    user_column = (user_column or "").strip()

    files = [("main", path)] + [(k, p) for k, p in (("validation", validation_path), ("test", test_path)) if p]
    headers: list[Header] = []
    for _, p in files:
        try:
            headers.append(read_header(p, delimiter=delimiter or (headers[0].delimiter if headers else "")))
        except DataError:
            for h in headers:  # problems inside earlier files come first, as they always did
                check_structure(h)
            raise
    main = headers[0]
    header = main.names
    problem = _column_problem(headers, labels, regression, forced_cat, forced_num, dropped, user_column)
    if problem is not None:
        for h in headers:
            check_structure(h)
        raise problem
    features = [c for c in header if c not in labels and c not in dropped]

    args = dict(
        label_columns=labels, regression_columns=regression, categorical_columns=forced_cat,
        numeric_columns=forced_num, drop_columns=dropped, delimiter=main.delimiter, split=_plain_split(split),
        seed=seed, validation_path=validation_path, test_path=test_path, hash_buckets=int(hash_buckets or 0),
        hash_threshold=None if hash_threshold in (None, 0, "") else int(hash_threshold),
        missing_indicators=bool(missing_indicators), max_categorical_distinct=int(max_categorical_distinct),
        allow_single_class=bool(allow_single_class), standardize_labels=bool(standardize_labels),
        user_column=user_column,
    )  # fmt: skip
    printed = []

    def build(out):
        data, text = _build(headers, [k for k, _ in files], labels=labels, regression=regression,
                            forced_cat=forced_cat, forced_num=forced_num, dropped=dropped, features=features,
                            split=split, seed=seed, validation_path=validation_path, test_path=test_path,
                            hash_buckets=hash_buckets, hash_threshold=hash_threshold,
                            missing_indicators=missing_indicators,
                            max_categorical_distinct=max_categorical_distinct,
                            allow_single_class=allow_single_class, standardize_labels=standardize_labels,
                            user_column=user_column, out=out, verbose=verbose)  # fmt: skip
        printed.append(text)
        return data

    data, extra = cached_dataset(paths.cache_root(cache_dir) / DATASET, args=args, sources=[p for _, p in files],
                                 build=build, extra=lambda _: {"column_table": printed[-1]})  # fmt: skip
    if verbose and not printed:
        print(extra["column_table"])
    return data


def _plain_split(split):
    return split if isinstance(split, str) else [float(x) for x in split]


def _column_problem(headers, labels, regression, forced_cat, forced_num, dropped, user_column) -> DataError | None:
    """The first problem with the columns asked for, in the order the checks always ran."""
    main = headers[0]
    header = main.names
    for h in headers[1:]:
        if set(h.names) != set(header):
            return DataError(
                f"columns differ from {main.path}: missing {sorted(set(header) - set(h.names))}, "
                f"extra {sorted(set(h.names) - set(header))}",
                path=h.path,
                line=1,
            )
    absent = [c for c in labels if c not in header]
    if absent:
        return _missing_column_error(main.path, absent, header, "label columns")
    for role, names in (
        ("regression_columns", regression),
        ("categorical_columns", forced_cat),
        ("numeric_columns", forced_num),
        ("drop_columns", dropped),
        ("user_column", [user_column] if user_column else []),
    ):
        absent = [c for c in names if c not in header]
        if absent:
            return _missing_column_error(main.path, absent, header, role)
    not_labels = [c for c in regression if c not in labels]
    if not_labels:
        return DataError(f"regression_columns {not_labels} are not among label_columns {labels}", path=main.path)
    for role, names in (("categorical_columns", forced_cat), ("numeric_columns", forced_num),
                        ("drop_columns", dropped)):  # fmt: skip
        clash = [c for c in names if c in labels]
        if clash:
            return DataError(
                f"{role} {clash} are label columns; a label cannot also be a feature or dropped", path=main.path
            )
    both = sorted(set(forced_cat) & set(forced_num))
    if both:
        return DataError(f"columns {both} are in both categorical_columns and numeric_columns", path=main.path)
    features = [c for c in header if c not in labels and c not in dropped]
    if not features:
        return DataError(f"no feature columns left after labels {labels} and drop_columns {dropped}", path=main.path)
    if user_column in labels:
        return DataError(f"user_column {user_column!r} is a label column", path=main.path)
    return None


def _build(headers, roles, *, labels, regression, forced_cat, forced_num, dropped, features, split, seed,
           validation_path, test_path, hash_buckets, hash_threshold, missing_indicators, max_categorical_distinct,
           allow_single_class, standardize_labels, user_column, out, verbose) -> tuple[MultiTaskData, str]:  # fmt: skip
    main = headers[0]
    spec = {c: Column("label", task="regression" if c in regression else "binary") for c in labels}
    for c in features:
        if c in forced_cat:
            spec[c] = Column("factor", missing_token=MISSING_TOKEN)
        elif c in forced_num and c != user_column:
            spec[c] = Column("number")
        else:
            spec[c] = Column("auto")
    if user_column and user_column not in spec:
        spec[user_column] = Column("factor", missing_token=MISSING_TOKEN)
    tables: list[Table] = [read_columns(h, spec) for h in headers]

    kinds, rows = {}, []
    for c in labels:
        kind = "regression" if c in regression else "binary"
        rows.append((c, f"label ({kind})", "label_columns", ""))
    for c in features:
        if c in forced_cat:
            kinds[c] = "categorical"
            rows.append((c, "categorical", "categorical_columns", ""))
        elif c in forced_num:
            kinds[c] = "numeric"
            rows.append((c, "numeric", "numeric_columns", ""))
        else:
            autos = [t.auto[c] for t in tables]
            kinds[c], reason = autos[0].infer(max_categorical_distinct=max_categorical_distinct, others=autos[1:])
            rows.append((c, kinds[c], "inferred", reason))
    for c in dropped:
        rows.append((c, "dropped", "drop_columns", ""))
    text = "\n".join([
        f"tabular: columns of {main.path} (delimiter {delimiter_name(main.delimiter)}, {tables[0].num_rows} rows)",
        format_column_table(rows),
        "(override with categorical_columns=..., numeric_columns=..., drop_columns=...)",
    ])  # fmt: skip
    if verbose:
        print(text)

    tasks = [TaskSpec(c, "regression" if c in regression else "binary") for c in labels]
    frames, label_parts, user_parts = [], [], []
    for table in tables:
        if user_column and user_column in forced_num:  # read as strings for the user codes
            x, error = number_column(table.auto[user_column].factor, path=table.header.path, lines=table.lines,
                                     column=user_column)  # fmt: skip
            table.numbers[user_column] = x
            if error is not None:
                table.errors[user_column] = error
        table.raise_first(labels + [c for c in features if kinds[c] == "numeric"])
        label_parts.append(np.stack([table.labels[c] for c in labels], axis=1))
        categorical = {}
        for c in features:
            if kinds[c] == "categorical":
                categorical[c] = table.factors[c] if c in table.factors else table.auto[c].as_factor(MISSING_TOKEN)
        numeric = {}
        for c in features:
            if kinds[c] == "numeric":
                numeric[c] = table.numbers[c] if c in table.numbers else table.auto[c].as_numbers()
        if user_column:
            user_parts.append(table.factors[user_column] if user_column in table.factors
                              else table.auto[user_column].as_factor(MISSING_TOKEN))  # fmt: skip
        frames.append(Frame.single_file(table.header.path, categorical, numeric, lines=table.lines))
    num_main = tables[0].num_rows
    del tables
    frame, parts = concat_frames(frames, consume=True)
    del frames
    label_matrix = np.concatenate(label_parts)
    users = concat_factors(user_parts).codes.astype(np.int64) if user_column else None

    fractions = parse_fractions(split)
    names = ("train", "validation", "test")
    others = dict(zip(roles[1:], headers[1:]))
    if len(others) == 2:
        splits = {"train": parts[0], "validation": parts[1], "test": parts[2]}
        sources = {"train": main.path, "validation": others["validation"].path, "test": others["test"].path}
        protocol = "files"
        description = f"files: train={main.path}, validation={validation_path}, test={test_path}"
    elif len(others) == 1:
        (given, raw), = others.items()
        cut = "validation" if given == "test" else "test"
        f_train, f_cut = fractions[0], fractions[names.index(cut)]
        if f_train + f_cut <= 0:
            raise DataError(f"split {split!r} leaves nothing to cut {cut} from {main.path}", path=main.path)
        total = f_train + f_cut
        train_rows, cut_rows = permutation_split(num_main, (f_train / total, f_cut / total), seed)
        splits = {"train": parts[0][train_rows], cut: parts[0][cut_rows], given: parts[1]}
        sources = {"train": f"part of {main.path}", cut: f"part of {main.path}", given: raw.path}
        protocol = f"random train/{cut} split of one file, {given} file"
        description = (
            f"{main.path} permuted with default_rng({seed}) and cut train:{cut} = {f_train:g}:{f_cut:g}; "
            f"{given} = {raw.path}"
        )
    else:
        idx = permutation_split(num_main, fractions, seed)
        splits = dict(zip(names, idx))
        sources = {k: f"{k} part of {main.path}" for k in names}
        protocol = "random split"
        description = (
            f"{main.path} permuted with default_rng({seed}) and cut "
            f"{'/'.join(f'{x:g}' for x in fractions)} into train/validation/test"
        )
    info = {
        "dataset": "tabular",
        "protocol": protocol,
        "protocol_description": description,
        "seed": seed,
        "files": [h.path for h in headers],
        "delimiter": main.delimiter,
        "label_columns": labels,
        "column_types": {c: kinds[c] for c in features},
        "dropped_columns": dropped,
        "user_column": user_column or None,
    }
    data = build_multitask_data(
        frame,
        splits,
        labels=label_matrix,
        tasks=tasks,
        categorical=[c for c in features if kinds[c] == "categorical"],
        numeric=[c for c in features if kinds[c] == "numeric"],
        info=info,
        hash_buckets=int(hash_buckets),
        hash_threshold=None if hash_threshold in (None, 0, "") else int(hash_threshold),
        missing_indicators=missing_indicators,
        allow_single_class=allow_single_class,
        split_sources=sources,
        single_class_hint=(
            "use more rows, another split (split=..., seed=...), separate files (validation_path=, test_path=), "
            "or allow_single_class=True."
        ),
        users=users,
        standardize_labels=standardize_labels,
        out=out,
    )
    return data, text


__all__ = ["infer_column_type", "load_tabular"]
