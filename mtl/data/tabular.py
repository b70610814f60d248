"""Any table with a header (delimited text, Parquet or Arrow IPC / Feather) as a multi-task dataset: read
(:mod:`mtl.data.reader`), joined with side tables, feature types inferred (printed as a table), split and
encoded (:mod:`mtl.data.preprocess`) into the cache, every problem a :class:`~mtl.data.errors.DataError`
naming file, line and column: ``docs/data.md``, *The tabular loader*.

    data = mtl.data.load("tabular", path="clicks.csv", label_columns="click,purchase")
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from mtl.data import paths
from mtl.data.base import LABEL_TRANSFORMS, MultiTaskData, TaskSpec
from mtl.data.cache import cached_dataset
from mtl.data.errors import DataError
from mtl.data.frame import MISSING_TOKEN, Factor, Frame, file_parts, sorted_factor
from mtl.data.preprocess import build_multitask_data, parse_fractions, permutation_split, split_list
from mtl.data.reader import (
    FORMAT_NAMES,
    AutoColumn,
    Column,
    Header,
    Table,
    delimiter_name,
    infer_column_type,  # noqa: F401 (part of the loader's interface)
    missing_mask,
    read_columns,
    read_header,
)

DATASET = "tabular"
#: Rare categorical values (seen fewer times in training) share the out-of-vocabulary id.
DEFAULT_MIN_COUNT = 2
#: An inferred categorical text column is free text or row ids when at least this
#: share of its values are distinct, or its values are this long on average.
TEXT_DISTINCT_SHARE = 0.5
TEXT_MEAN_LENGTH = 64


def format_column_table(rows: list[tuple[str, str, str, str]]) -> str:
    """A plain-text table of ``(column, role, decided by, detail)`` rows."""
    head = ("column", "role", "decided by", "detail")
    widths = [max(map(len, column)) for column in zip(head, *rows)]
    lines = [head, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(f"{v:<{w}}" for v, w in zip(line, widths)) for line in lines)


def parse_joins(joins) -> list[tuple[str, str]]:
    """``"KEY=FILE,KEY=FILE"`` (or a list of such strings or ``(key, file)`` pairs) -> ``[(key, file)]``."""
    items = joins if isinstance(joins, (list, tuple)) else split_list(joins)
    out = []
    for item in items:
        pair = item if isinstance(item, (list, tuple)) else item.split("=", 1) if isinstance(item, str) else ()
        key, path = (str(x).strip() for x in pair) if len(pair) == 2 else ("", "")
        if not key or not path:
            raise DataError(f"joins: {item!r} is not KEY=FILE (e.g. joins='user_id=users.csv,item_id=items.parquet')")
        out.append((key, os.fspath(path)))
    return out


def parse_label_transforms(value) -> dict[str, str]:
    """``"col:log1p,..."`` (or a dict) -> ``{column: transform}``."""
    if isinstance(value, dict):
        items = list(value.items())
    else:
        items = [(column.strip(), name.strip()) for column, _, name in (i.partition(":") for i in split_list(value))]
    for column, name in items:
        if not column or name not in LABEL_TRANSFORMS:
            raise DataError(f"label_transforms: {column}:{name} is not COLUMN:TRANSFORM with a transform among "
                            f"{sorted(LABEL_TRANSFORMS)}")  # fmt: skip
    return dict(items)


@dataclasses.dataclass
class _Side:
    """A side table: its join key, header and the columns it adds."""

    key: str
    header: Header
    columns: list[str]
    table: Table | None = None


def load_tabular(*, path: str | Sequence[str] = "", label_columns: str | Sequence[str] = "",
                 regression_columns: str | Sequence[str] = "", categorical_columns: str | Sequence[str] = "",
                 numeric_columns: str | Sequence[str] = "", drop_columns: str | Sequence[str] = "", delimiter: str = "",
                 split: str | Sequence[float] = "0.8,0.1,0.1", seed: int = 0, validation_path: str | Sequence[str] = "",
                 test_path: str | Sequence[str] = "", split_column: str = "", split_boundaries: str | Sequence = "",
                 joins: str | Sequence = "", label_transforms: str | dict = "", min_count: int = DEFAULT_MIN_COUNT,
                 hash_buckets: int = 0, hash_threshold: int | None = None, missing_indicators: bool = False,
                 max_categorical_distinct: int = 50, allow_single_class: bool = False, standardize_labels: bool = True,
                 user_column: str = "", cache_dir: str | os.PathLike | None = None,
                 verbose: bool = True) -> MultiTaskData:  # fmt: skip
    """Loads a table as a multi-task dataset; see the module docstring. Every argument is a
    ``--config.data.*`` key, described in ``docs/data.md``, *The tabular loader*; lists may be
    comma-separated strings."""
    mains = split_list(path)
    if not mains:
        raise DataError("tabular: no data file given; pass path=FILE (on the command line --config.data.path=FILE)")
    labels = split_list(label_columns)
    if not labels:
        raise DataError("tabular: no label columns given; pass label_columns='a,b' (--config.data.label_columns=a,b)",
                        path=mains[0])  # fmt: skip
    regression, dropped = split_list(regression_columns), split_list(drop_columns)
    forced_cat, forced_num = split_list(categorical_columns), split_list(numeric_columns)
    user_column, split_column = (user_column or "").strip(), (split_column or "").strip()
    boundaries = split_list(split_boundaries)  # numbers as their text
    join_specs = parse_joins(joins)
    transforms = parse_label_transforms(label_transforms)
    if int(min_count) < 1:
        raise DataError(f"min_count must be >= 1, got {min_count!r}")

    validations, tests = split_list(validation_path), split_list(test_path)
    files = [("main", p) for p in mains] + [("validation", p) for p in validations] + [("test", p) for p in tests]
    headers: list[Header] = []
    for _, p in files:
        known = next((h.delimiter for h in headers if h.delimiter), "")
        headers.append(read_header(p, delimiter=delimiter or known))
    sides = [_Side(key, read_header(p, delimiter=""), []) for key, p in join_specs]
    main, header = headers[0], list(headers[0].names)  # header: every column, side tables' included
    for side in sides:
        side.columns = [c for c in side.header.names if c != side.key and c not in header]
        header += side.columns
    features = _check_columns(headers, header, sides, labels, regression, forced_cat, forced_num, dropped,
                              user_column, split_column, boundaries, transforms,
                              split_files=bool(validations or tests))  # fmt: skip

    args = dict(
        label_columns=labels, regression_columns=regression, categorical_columns=forced_cat,
        numeric_columns=forced_num, drop_columns=dropped, delimiter=main.delimiter,
        split=split if isinstance(split, str) else [float(x) for x in split],
        seed=seed, validation_path=validation_path, test_path=test_path, hash_buckets=int(hash_buckets or 0),
        hash_threshold=None if hash_threshold in (None, 0, "") else int(hash_threshold),
        missing_indicators=bool(missing_indicators), max_categorical_distinct=int(max_categorical_distinct),
        allow_single_class=bool(allow_single_class), standardize_labels=bool(standardize_labels),
        user_column=user_column, files=[p for _, p in files], split_column=split_column,
        split_boundaries=boundaries, joins=join_specs, label_transforms=transforms, min_count=int(min_count),
    )  # fmt: skip
    printed = []

    def build(out):
        data, text = _build(headers, [k for k, _ in files], sides, features, args, out=out, verbose=verbose)
        printed.append(text)
        return data

    sources = [p for _, p in files] + [s.header.path for s in sides]
    data, extra = cached_dataset(paths.cache_root(cache_dir) / DATASET, args=args, sources=sources,
                                 build=build, extra=lambda _: {"column_table": printed[-1]})  # fmt: skip
    if verbose and not printed:
        print(extra["column_table"])
    return data


def _check_columns(headers, header, sides, labels, regression, forced_cat, forced_num, dropped, user_column,
                   split_column, boundaries, transforms, split_files) -> list[str]:  # fmt: skip
    """The feature columns; raises the first problem with the columns asked for (checks in their old order)."""
    main = headers[0]
    for h in headers[1:]:
        if set(h.names) != set(main.names):
            raise DataError(f"columns differ from {main.path}: missing {sorted(set(main.names) - set(h.names))}, "
                            f"extra {sorted(set(h.names) - set(main.names))}", path=h.path, line=1)  # fmt: skip
    splitter, user = [split_column] if split_column else [], [user_column] if user_column else []
    wanted = [(main, main.names, "label columns", labels)]  # (file, its columns, role, names asked for)
    for side in sides:
        wanted += [(main, main.names, f"join key of {side.header.path}", [side.key]),
                   (side.header, side.header.names, "join key", [side.key])]  # fmt: skip
    wanted += [(main, header, role, names) for role, names in (
        ("regression_columns", regression), ("categorical_columns", forced_cat), ("numeric_columns", forced_num),
        ("drop_columns", dropped), ("user_column", user), ("split_column", splitter))]  # fmt: skip
    for h, available, role, names in wanted:
        if absent := [c for c in names if c not in available]:
            raise DataError(f"{role} {absent} not in the header; available columns: {', '.join(available)}",
                            path=h.path, line=1)  # fmt: skip
    features = [c for c in header if c not in labels and c not in dropped and c != split_column]
    not_labels = [c for c in regression if c not in labels]
    not_regression = [c for c in transforms if c not in regression]
    clashes = [(role, [c for c in names if c in labels]) for role, names in (
        ("categorical_columns", forced_cat), ("numeric_columns", forced_num), ("drop_columns", dropped),
        ("split_column", splitter))]  # fmt: skip
    both, keys_numeric = sorted(set(forced_cat) & set(forced_num)), [s.key for s in sides if s.key in forced_num]
    problems = [  # (is there a problem, what it is), in order
        (not_labels, f"regression_columns {not_labels} are not among label_columns {labels}"),
        (not_regression, f"label_transforms {not_regression} are not among regression_columns {regression}"),
        *((clash, f"{role} {clash} are label columns; a label cannot also be a feature or dropped")
          for role, clash in clashes),
        (both, f"columns {both} are in both categorical_columns and numeric_columns"),
        (keys_numeric, f"join keys {keys_numeric} are in numeric_columns; keys are matched as text"),
        (split_column and split_files, f"split_column={split_column!r} splits the rows itself; leave "
                                       "validation_path and test_path empty"),
        (split_column and len(boundaries) != 2, f"split_column={split_column!r} needs split_boundaries='b1,b2' "
                                                f"(train < b1 <= validation < b2 <= test), got {boundaries!r}"),
        (boundaries and not split_column, "split_boundaries given without split_column"),
        (not features, f"no feature columns left after labels {labels} and drop_columns {dropped}"),
        (user_column in labels, f"user_column {user_column!r} is a label column"),
    ]  # fmt: skip
    for bad, message in problems:
        if bad:
            raise DataError(message, path=main.path)
    return features


def _build(headers, roles, sides, features, args, *, out, verbose) -> tuple[MultiTaskData, str]:
    """The prepared data and the column table from the files' ``headers`` (``roles``: main, validation or test
    each), the side tables, the feature columns and the loader's normalised ``args``."""
    labels, regression, transforms = args["label_columns"], args["regression_columns"], args["label_transforms"]
    forced_cat, forced_num, dropped = args["categorical_columns"], args["numeric_columns"], args["drop_columns"]
    user_column, split_column, boundaries = args["user_column"], args["split_column"], args["split_boundaries"]
    split, seed, min_count, max_distinct = (args[k] for k in ("split", "seed", "min_count", "max_categorical_distinct"))
    main, task_kind = headers[0], {c: "regression" if c in regression else "binary" for c in labels}
    factor, number, auto = Column("factor", missing_token=MISSING_TOKEN), Column("number"), Column("auto")
    keys = {user_column, *(s.key for s in sides)}  # ids and keys keep every digit; other non-integer
    inexact = Column("auto", exact=False)  # numbers of a typed file can be float32 at once
    spec = {c: Column("label") for c in labels}
    for c in features:
        feature = auto if c in keys else inexact
        spec[c] = factor if c in forced_cat else number if c in forced_num and c != user_column else feature
    if user_column:
        spec.setdefault(user_column, factor)
    for c in filter(None, [split_column] + [s.key for s in sides]):
        spec.setdefault(c, auto)
    for side in sides:
        side.table = read_columns(side.header, {c: spec[c] for c in side.columns if c in spec} | {side.key: auto})
    table = read_columns(headers, {c: k for c, k in spec.items() if c in main.names})
    for side in sides:
        _join(table, side, spec)

    kinds, texts = {}, {}
    rows = [(c, f"label ({task_kind[c]}{', ' + transforms[c] if c in transforms else ''})", "label_columns", "")
            for c in labels]  # fmt: skip
    for c in features:
        if c in forced_cat or c in forced_num:
            kinds[c] = "categorical" if c in forced_cat else "numeric"
            rows.append((c, kinds[c], f"{kinds[c]}_columns", ""))
            continue
        kinds[c], reason = table.auto[c].infer(max_categorical_distinct=max_distinct)
        text = _free_text(table.auto[c], max_distinct) if kinds[c] == "categorical" else None
        if text is not None:
            kinds[c], texts[c] = "text", text
        rows.append((c, "dropped", "looks like free text", text) if text else (c, kinds[c], "inferred", reason))
    rows += [(c, "dropped", "drop_columns", "") for c in dropped]
    rows += [(split_column, "split key", "split_column", "")] if split_column else []
    features = [c for c in features if kinds[c] != "text"]
    joined = "".join(f", {s.header.path} joined on {s.key}" for s in sides)
    how = FORMAT_NAMES[main.format] if main.types else f"delimiter {delimiter_name(main.delimiter)}"
    lines = [f"tabular: columns of {main.path} ({how}, {np.sum(table.source_ids == 0)} rows{joined})",
             format_column_table(rows),
             "(override with categorical_columns=..., numeric_columns=..., drop_columns=...)"]
    if texts:
        lines.append(
            f"tabular: dropped {len(texts)} column(s) that look like free text or row ids: {', '.join(texts)}. As "
            "categorical features they would give most rows an embedding of their own, which a model memorises "
            "instead of learning. To keep one, name it in categorical_columns; to silence this note, in drop_columns."
        )
    text = "\n".join(lines)
    if verbose:
        print(text)

    tasks = [TaskSpec(c, task_kind[c], label_transform=transforms.get(c, "")) for c in labels]
    if user_column and user_column in forced_num:  # read as strings for the user codes
        table.numeric[user_column] = table.auto[user_column].as_numbers()
    label_matrix = np.stack([table.labels.pop(c) for c in labels], axis=1)
    factor_of = lambda c: table.categorical[c] if c in table.categorical else table.auto[c].as_factor(MISSING_TOKEN)
    categorical = {c: factor_of(c) for c in features if kinds[c] == "categorical"}
    numeric = {}
    for c in features:
        if kinds[c] == "numeric":  # each float64 column is let go as soon as it is converted (peak memory)
            column = table.auto.get(c) if c in (user_column, split_column) else table.auto.pop(c, None)
            numeric[c] = table.numeric[c] if c in table.numeric else column.as_numbers()
    users = factor_of(user_column).codes.astype(np.int64) if user_column else None
    frame = Frame(categorical, numeric, table.sources, table.source_ids, table.lines, table.block, table.block_columns)
    parts = file_parts(frame)

    role_rows = {r: np.concatenate([p for p, k in zip(parts, roles) if k == r]) for r in dict.fromkeys(roles)}
    role_paths = {r: ", ".join(h.path for h, k in zip(headers, roles) if k == r) for r in role_rows}
    main_rows, main_paths = role_rows["main"], role_paths["main"]
    fractions, names = parse_fractions(split), ("train", "validation", "test")
    others = [r for r in role_rows if r != "main"]
    if split_column:
        assignment, numeric_keys = _split_by_column(table.auto[split_column], boundaries)
        splits = {name: np.flatnonzero(assignment == i) for i, name in enumerate(names)}
        b1, b2 = boundaries
        ranges = {"train": f"{split_column} < {b1}", "validation": f"{b1} <= {split_column} < {b2}",
                  "test": f"{split_column} >= {b2}"}  # fmt: skip
        sources = {k: f"rows of {main_paths} with {ranges[k]}" for k in names}
        protocol = f"split by column {split_column!r}"
        description = (f"{main_paths} split by {split_column} (compared as {'numbers' if numeric_keys else 'text'}): "
                       + "; ".join(f"{k}: {ranges[k]}" for k in names))  # fmt: skip
    elif len(others) == 2:  # train = the main files
        splits = {k: role_rows["main" if k == "train" else k] for k in names}
        sources = {k: role_paths["main" if k == "train" else k] for k in names}
        protocol, description = "files", "files: " + ", ".join(f"{k}={sources[k]}" for k in names)
    elif len(others) == 1:
        given = others[0]
        cut = "validation" if given == "test" else "test"
        f_train, f_cut = fractions[0], fractions[names.index(cut)]
        total = f_train + f_cut
        if total <= 0:
            raise DataError(f"split {split!r} leaves nothing to cut {cut} from {main_paths}", path=main.path)
        train_rows, cut_rows = permutation_split(len(main_rows), (f_train / total, f_cut / total), seed)
        splits = {"train": main_rows[train_rows], cut: main_rows[cut_rows], given: role_rows[given]}
        sources = {"train": f"part of {main_paths}", cut: f"part of {main_paths}", given: role_paths[given]}
        protocol = f"random train/{cut} split of one file, {given} file"
        description = (f"{main_paths} permuted with default_rng({seed}) and cut train:{cut} = {f_train:g}:{f_cut:g}; "
                       f"{given} = {role_paths[given]}")  # fmt: skip
    else:
        splits = dict(zip(names, permutation_split(len(main_rows), fractions, seed)))
        sources = {k: f"{k} part of {main_paths}" for k in names}
        protocol = "random split"
        description = (f"{main_paths} permuted with default_rng({seed}) and cut "
                       f"{'/'.join(f'{x:g}' for x in fractions)} into train/validation/test")  # fmt: skip
    info = {"dataset": "tabular", "protocol": protocol, "protocol_description": description, "seed": seed,
            "files": [h.path for h in headers], "delimiter": main.delimiter, "label_columns": labels,
            "column_types": {c: kinds[c] for c in features}, "dropped_columns": dropped,
            "user_column": user_column or None, "min_count": min_count, "text_columns_dropped": texts,
            "joins": [[s.key, s.header.path] for s in sides], "split_column": split_column or None,
            "label_transforms": transforms}  # fmt: skip
    hint = ("use more rows, another split (split=..., seed=...), separate files (validation_path=, test_path=), or "
            "allow_single_class=True.")  # fmt: skip
    encoding = ("hash_buckets", "hash_threshold", "missing_indicators", "allow_single_class", "standardize_labels")
    data = build_multitask_data(
        frame, splits, labels=label_matrix, tasks=tasks, categorical=[c for c in features if kinds[c] == "categorical"],
        numeric=[c for c in features if kinds[c] == "numeric"], info=info, split_sources=sources,
        single_class_hint=hint, users=users, min_count=min_count, out=out, **{k: args[k] for k in encoding},
    )  # fmt: skip
    return data, text


# ---------------------------------------------------------------- free text


def _free_text(auto: AutoColumn, max_categorical_distinct: int) -> str | None:
    """Why a categorical column of text looks like free text or row ids, or ``None`` when it does not."""
    if auto.numbers is not None:
        return None  # numbers: at most max_categorical_distinct distinct integers
    uniq, counts = auto.factor.values, np.bincount(auto.factor.codes, minlength=auto.factor.num_values)
    keep = (counts > 0) & ~missing_mask(uniq)
    uniq, counts = uniq[keep], counts[keep]
    distinct, rows = len(uniq), float(counts.sum())
    if distinct <= max_categorical_distinct:
        return None
    mean_length = float(np.dot(np.char.str_len(uniq), counts)) / rows
    if distinct < TEXT_DISTINCT_SHARE * rows and mean_length < TEXT_MEAN_LENGTH:
        return None
    return (f"{distinct:,} distinct values in {int(rows):,} rows ({distinct / rows:.0%}), "
            f"{mean_length:.0f} characters on average")  # fmt: skip


# ---------------------------------------------------------------- joins


def _take(factor: Factor, index: np.ndarray, missing_value: str) -> Factor:
    """``factor``'s rows at ``index``; ``-1`` gives ``missing_value``."""
    codes = np.where(index < 0, factor.num_values, factor.codes[np.maximum(index, 0)]).astype(np.int32)
    return sorted_factor(pa.array(np.append(factor.values, missing_value), pa.string()), codes)


def _match(log: Factor, side: Factor, *, key: str, side_path: str, side_lines: np.ndarray) -> np.ndarray:
    """For each log row, the side-table row with the same key (as text), or -1."""
    values = side.values
    counts = np.bincount(side.codes, minlength=len(values))
    present = ~missing_mask(values)
    repeated = np.flatnonzero((counts > 1) & present)
    if repeated.size:
        second = np.flatnonzero(side.codes == repeated[0])[1]
        raise DataError(f"join key value {str(values[repeated[0]])!r} appears {counts[repeated[0]]} times; "
                        "a side table needs one row per key", path=side_path, line=int(side_lines[second]),
                        column=key)  # fmt: skip
    row_of = np.full(len(values), -1, np.int64)
    row_of[side.codes] = np.arange(len(side.codes))
    row_of[~present] = -1
    wanted = log.values
    if not len(values):
        return np.full(len(log.codes), -1, np.int64)
    order = np.argsort(values)
    at = np.minimum(np.searchsorted(values, wanted, sorter=order), len(values) - 1)
    found = (values[order[at]] == wanted) & ~missing_mask(wanted)
    return np.where(found, row_of[order[at]], -1)[log.codes]


def _join(table: Table, side: _Side, spec) -> None:
    """Adds ``side``'s columns to ``table``, row by row on the key."""
    st = side.table
    log = table.categorical[side.key] if side.key in table.categorical else table.auto[side.key].factor
    index = _match(log, st.auto[side.key].factor, key=side.key, side_path=side.header.path, side_lines=st.lines)
    absent = index < 0
    rows = np.maximum(index, 0)
    for c in side.columns:
        if c in st.categorical:
            table.categorical[c] = _take(st.categorical[c], index, spec[c].missing_token or "")
        elif c in st.numeric:
            table.numeric[c] = np.where(absent, np.float32(np.nan), st.numeric[c][rows])
        elif c in st.auto and st.auto[c].numbers is not None:
            table.auto[c] = AutoColumn(c, None, table, numbers=np.where(absent, np.nan, st.auto[c].numbers[rows]))
        elif c in st.auto:
            table.auto[c] = AutoColumn(c, _take(st.auto[c].factor, index, ""), table)


# ---------------------------------------------------------------- split by a column


def _split_by_column(column: AutoColumn, boundaries: Sequence[str]) -> tuple[np.ndarray, bool]:
    """``(split id 0/1/2 of every row, compared as numbers)``; a missing key is an error."""
    f = column.factor
    missing = missing_mask(f.values)[f.codes]
    if missing.any():
        raise column.error(int(np.flatnonzero(missing)[0]), "split_column value is missing; every row needs one")
    try:
        keys, edges, numeric = np.asarray(f.values, np.float64), np.asarray(boundaries, np.float64), True
    except ValueError:
        keys, edges, numeric = np.asarray(f.values, str), np.asarray(boundaries, str), False
    if not edges[0] < edges[1]:
        raise DataError(f"split_boundaries {list(boundaries)} must increase")
    return np.searchsorted(edges, keys, side="right")[f.codes], numeric


__all__ = ["infer_column_type", "load_tabular", "parse_joins"]
