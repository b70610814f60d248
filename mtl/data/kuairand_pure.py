"""KuaiRand-Pure (Gao et al., CIKM 2022): 14 days of Kuaishou's standard log, a temporal split.

    data = mtl.data.load("kuairand_pure", data_dir="../shared/data", tasks="main")

The tabular loader reads the two Parquet logs (:data:`LOGS`) with fixed choices: split by ``date``
(:data:`SPLIT_BOUNDARIES`), the official user and video features joined on their ids, the features
:data:`CATEGORICAL` and :data:`NUMERIC`, task groups :data:`TASK_GROUPS`, ``user_column = "user_id"``;
every outcome and the split key dropped. The protocol: ``docs/data.md``, *KuaiRand-Pure*.
"""

from __future__ import annotations

import dataclasses
import os

from mtl.data import paths, reader
from mtl.data.base import MultiTaskData
from mtl.data.errors import DataError
from mtl.data.tabular import DEFAULT_MIN_COUNT, load_tabular

DATASET = "kuairand_pure"
LOGS = ("log_standard_20220425_20220430.parquet", "log_standard_20220501_20220508.parquet")
USERS = "user_features_pure.csv"
VIDEOS = "video_features_basic_pure.csv"
HOW_TO_GET = (
    "KuaiRand is at https://kuairand.com (CC BY-SA 4.0); the folder needs "
    f"{', '.join(LOGS)} (the standard log of 2022-04-25..05-08 as Parquet), {USERS} and {VIDEOS}."
)
#: train < first boundary <= validation < second boundary <= test (``date`` as yyyymmdd)
SPLIT_COLUMN, SPLIT_BOUNDARIES = "date", ("20220505", "20220507")
PROTOCOL = "temporal: train 2022-04-25..05-04, validation 05-05..05-06, test 05-07..05-08"

_USER_CATEGORICAL = ("user_active_degree", "is_live_streamer", "is_video_author", "follow_user_num_range",
                     "fans_user_num_range", "friend_user_num_range", "register_days_range",
                     *(f"onehot_feat{i}" for i in range(18)))  # fmt: skip
#: Categorical features: ids, context, the video's side columns, the official user features.
CATEGORICAL = ("user_id", "video_id", "author_id", "tab", "hourmin", "tag", "upload_dt", "video_type", "upload_type",
               "music_id", "music_type", *_USER_CATEGORICAL)  # fmt: skip
#: Numeric features: durations, the video's frame size, the users' counts.
NUMERIC = ("duration_ms", "video_duration", "server_width", "server_height", "follow_user_num", "fans_user_num",
           "friend_user_num", "register_days")  # fmt: skip
#: Outcomes that are not ``is_*``/``long_view`` flags: known only after the impression.
OUTCOMES = ("play_time_ms", "profile_stay_time", "comment_stay_time", "watch_ratio", "finish", "like", "long_watch",
            "is_positive")  # fmt: skip
#: Log and side columns that are neither outcomes nor features, and why.
NOT_FEATURES = {
    "date": "the split key", "time_ms": "the impression time (the split key, to the millisecond)",
    "upload_date": "a copy of upload_dt", "freshness_days": "date - upload_date: the split key again",
    "is_rand": "constant", "source_file": "constant", "is_lowactive_period": "constant", "visible_status": "constant",
}  # fmt: skip
TASK_GROUPS = {
    "main": ("is_click", "long_view", "is_like", "is_profile_enter"),
    "all": ("is_click", "long_view", "is_like", "is_profile_enter", "is_comment", "is_follow", "is_forward"),
    "watch": ("is_click", "long_view", "play_time_ms"),
}
#: The regression task of ``watch``: its column, its transform and its name (in seconds).
WATCH_TIME = ("play_time_ms", "log1p_seconds_from_ms", "play_time_s")


def outcome_columns(log_columns) -> list[str]:
    """The log's outcome columns: :data:`OUTCOMES` and every ``is_*`` or ``long_view`` column."""
    return [c for c in log_columns if c in OUTCOMES or c.startswith("is_") or c == "long_view"]


def load_kuairand_pure(*, data_dir: str | os.PathLike | None = "", tasks: str = "main",
                       min_count: int = DEFAULT_MIN_COUNT, cache_dir: str | os.PathLike | None = None,
                       verbose: bool = True) -> MultiTaskData:  # fmt: skip
    """KuaiRand-Pure with the temporal protocol (module docstring): ``data_dir`` the folder with the files
    or its parent (empty: ``$MTL_DATA_DIR``), ``tasks`` a group of :data:`TASK_GROUPS`, ``min_count`` and
    ``cache_dir`` as for the tabular loader, ``verbose`` prints the column table."""
    if tasks not in TASK_GROUPS:
        raise DataError(f"kuairand_pure: unknown task group {tasks!r}; choose one of {', '.join(TASK_GROUPS)}")
    folder = paths.resolve_dataset_dir(data_dir, dataset="KuaiRand-Pure", folder=DATASET, how_to_get=HOW_TO_GET,
                                       has_files=lambda p: all((p / f).is_file() for f in (*LOGS, USERS, VIDEOS)))
    logs = [str(folder / f) for f in LOGS]
    labels = TASK_GROUPS[tasks]
    regression = [WATCH_TIME[0]] if WATCH_TIME[0] in labels else []
    log_columns, user_columns, video_columns = (reader.read_header(str(p)).names
                                                for p in (logs[0], folder / USERS, folder / VIDEOS))  # fmt: skip
    features = set(CATEGORICAL) | set(NUMERIC)
    drop = [c for c in dict.fromkeys(log_columns + user_columns + video_columns)
            if c not in features and c not in labels and c != SPLIT_COLUMN]
    data = load_tabular(
        path=logs, joins=[("user_id", str(folder / USERS)), ("video_id", str(folder / VIDEOS))],
        label_columns=list(labels), regression_columns=regression,
        label_transforms={WATCH_TIME[0]: WATCH_TIME[1]} if regression else "",
        categorical_columns=list(CATEGORICAL), numeric_columns=list(NUMERIC), drop_columns=drop,
        split_column=SPLIT_COLUMN, split_boundaries=list(SPLIT_BOUNDARIES), user_column="user_id",
        min_count=min_count, cache_dir=cache_dir, verbose=verbose,
    )  # fmt: skip
    data.tasks = tuple(dataclasses.replace(t, name=WATCH_TIME[2]) if t.name == WATCH_TIME[0] else t for t in data.tasks)
    data.info.update(dataset=DATASET, protocol=PROTOCOL, task_group=tasks,
                     not_features={**{c: "outcome" for c in outcome_columns(log_columns) if c not in labels},
                                   **NOT_FEATURES})  # fmt: skip
    return data


__all__ = ["CATEGORICAL", "NUMERIC", "TASK_GROUPS", "load_kuairand_pure", "outcome_columns"]
