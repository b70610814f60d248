"""KuaiRand-Pure on the real files: the temporal protocol, the joins, no outcome among the features."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mtl.data import load
from mtl.data.base import original_units

# From SOURCE.md: outcomes, and every is_* / long_view column of the log.
OUTCOMES = {"play_time_ms", "profile_stay_time", "comment_stay_time", "watch_ratio", "finish", "like", "long_watch",
            "is_positive", "is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view",
            "is_profile_enter", "is_rand"}  # fmt: skip


@pytest.fixture(scope="module")
def folder(data_dir):
    return data_dir / "kuairand_pure"


@pytest.fixture(scope="module")
def log(folder):
    return pa.concat_tables([pq.read_table(folder / f"log_standard_{d}.parquet")
                             for d in ("20220425_20220430", "20220501_20220508")])  # fmt: skip


def _rows(log, split):
    date = log.column("date").to_numpy()
    return {"train": date <= 20220504, "validation": (date >= 20220505) & (date <= 20220506),
            "test": date >= 20220507}[split]  # fmt: skip


@pytest.fixture(scope="module")
def all_tasks(data_dir):
    return load("kuairand_pure", data_dir=str(data_dir), tasks="all", verbose=False)


def test_temporal_split_sizes_and_rare_task_positives(all_tasks, log):
    data = all_tasks
    assert (len(data.train), len(data.validation), len(data.test)) == (171_671, 27_224, 29_434)
    assert data.task_names == ("is_click", "long_view", "is_like", "is_profile_enter", "is_comment", "is_follow",
                               "is_forward")  # fmt: skip
    positives = {name: [int(getattr(data, s).labels[:, data.task_names.index(name)].sum())
                        for s in ("train", "validation", "test")] for name in ("is_comment", "is_follow", "is_forward")}
    assert positives == {"is_comment": [437, 66, 76], "is_follow": [224, 37, 43], "is_forward": [137, 21, 37]}
    for split in ("train", "validation", "test"):  # labels in file order within each split
        expected = log.column("is_click").to_numpy()[_rows(log, split)]
        np.testing.assert_array_equal(getattr(data, split).labels[:, 0], expected)


def test_no_outcome_split_key_or_constant_is_a_feature(all_tasks):
    features = set(all_tasks.categorical_names) | set(all_tasks.numeric_names)
    assert not features & OUTCOMES
    assert not features & {"date", "time_ms", "is_rand", "source_file", "upload_date", "freshness_days"}
    assert {"user_id", "video_id", "author_id", "tab", "hourmin", "duration_ms", "user_active_degree",
            "onehot_feat0", "music_id", "video_type"} <= features  # fmt: skip
    assert all(v > 2 for v in all_tasks.vocab_sizes)  # no constant column (OOV id plus one value)
    assert all_tasks.train.users is not None and all_tasks.info["user_column"] == "user_id"


def test_user_features_are_joined_and_the_log_wins_over_the_video_file(all_tasks, log, folder):
    data, train = all_tasks, _rows(log, "train")
    users = pacsv.read_csv(folder / "user_features_pure.csv")
    days = dict(zip(users.column("user_id").to_pylist(), users.column("register_days").to_pylist()))
    expected = np.array([days[u] for u in log.column("user_id").to_numpy()[train]], np.float64)
    j = data.numeric_names.index("register_days")
    mean, std = data.info["numeric_train_mean_std"]["register_days"]
    np.testing.assert_allclose(data.train.numeric[:, j] * std + mean, expected, rtol=1e-4, atol=1e-2)
    # tag: the log's value ('unknown' in 2,052 rows where the video file has none), coded with the
    # training vocabulary (values seen at least min_count = 2 times, sorted, ids from 1; the rest 0)
    tags = np.asarray(log.column("tag").to_pylist(), dtype=str)[train]
    values, counts = np.unique(tags, return_counts=True)
    kept = values[counts >= 2]
    expected = np.where(np.isin(tags, kept), np.searchsorted(kept, tags) + 1, 0)
    np.testing.assert_array_equal(data.train.categorical[:, data.categorical_names.index("tag")], expected)
    assert (tags == "unknown").sum() > 1000


def test_watch_time_is_learned_as_log1p_seconds_and_reported_in_seconds(data_dir, log):
    data = load("kuairand_pure", data_dir=str(data_dir), tasks="watch", verbose=False)
    assert data.task_names == ("is_click", "long_view", "play_time_s")
    task = data.tasks[2]
    seconds = log.column("play_time_ms").to_numpy()[_rows(log, "train")] / 1000
    np.testing.assert_allclose([task.label_mean, task.label_std], [np.log1p(seconds).mean(), np.log1p(seconds).std()],
                               rtol=1e-6)  # fmt: skip
    test_seconds = log.column("play_time_ms").to_numpy()[_rows(log, "test")] / 1000
    np.testing.assert_allclose(original_units(data.tasks, data.test.labels)[:, 2], test_seconds, rtol=1e-4, atol=1e-3)
    assert "play_time_ms" not in data.numeric_names
