"""mtl.rundir on run directories written by hand: the one answer to "is this run finished?", and reading it back."""

import json

import pytest

from mtl import rundir

METRICS = {"validation": {"y": {"mse": 1.0}}, "test": {"y": {"mse": 2.0}}}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_absent(tmp_path):
    status = rundir.run_status(tmp_path / "nowhere")
    assert (status.state, status.reason) == ("absent", f"no directory {tmp_path / 'nowhere'}")
    assert rundir.run_status(tmp_path).state == "absent" and not rundir.run_status(tmp_path).finished


def test_started_never_finished_is_interrupted(tmp_path):
    _write(tmp_path / "config.json", {"seed": 0})
    status = rundir.run_status(tmp_path)
    assert status.state == "interrupted" and "no summary.json" in status.reason
    assert str(status).startswith("interrupted: no summary.json")


def test_stopped_by_a_signal_is_interrupted(tmp_path):
    _write(tmp_path / "summary.json", {"interrupted": "SIGTERM at epoch 3", "model": "mmoe"})
    status = rundir.run_status(tmp_path)
    assert (status.state, status.reason, status.finished) == ("interrupted", "SIGTERM at epoch 3", False)


@pytest.mark.parametrize("summary,state,reason", [
    ({"error": "non-finite loss at epoch 1", **METRICS}, "failed", "non-finite loss at epoch 1"),
    ('{"test": {"y"', "failed", "summary.json is not valid JSON"),
    ([1, 2], "failed", "summary.json is not a JSON object"),
    ({"best_epoch": 2, "test": {"y": {"mse": 2.0}}}, "failed", "summary.json holds no validation/test metrics"),
    ({"best_epoch": 2, **METRICS}, "finished", ""),
    ({"seeds": [0, 1], "runs": {"0": "seed_0", "1": "seed_1"}, "test_mean": {}}, "finished", ""),
])
def test_summaries(tmp_path, summary, state, reason):
    _write(tmp_path / "summary.json", summary)
    status = rundir.run_status(tmp_path)
    assert status.state == state and status.reason.startswith(reason) and status.finished == (state == "finished")


def test_seed_statuses_of_seeds_side_by_side(tmp_path):
    _write(tmp_path / "summary.json", {"seeds": [0, 1, 2], "runs": {"0": "seed_0", "1": "seed_1", "2": "seed_2"}})
    _write(tmp_path / "seed_0" / "summary.json", {"seed": 0, **METRICS})
    _write(tmp_path / "seed_1" / "summary.json", {"seed": 1, "error": "boom"})
    (tmp_path / "seed_2").mkdir()
    got = rundir.seed_statuses(tmp_path)
    assert {s: st.state for s, st in got.items()} == {0: "finished", 1: "failed", 2: "absent"}
    assert got[0].summary["test"] == METRICS["test"] and got[0].path == tmp_path / "seed_0"


def test_seed_statuses_of_one_seed_and_of_an_unfinished_run(tmp_path):
    _write(tmp_path / "a" / "config.json", {"seed": 7})
    _write(tmp_path / "a" / "summary.json", METRICS)
    assert {s: st.state for s, st in rundir.seed_statuses(tmp_path / "a").items()} == {7: "finished"}
    _write(tmp_path / "b" / "summary.json", {"interrupted": "SIGINT"})
    assert {s: str(st) for s, st in rundir.seed_statuses(tmp_path / "b").items()} == {None: "interrupted: SIGINT"}


def test_read_curves(tmp_path):
    assert rundir.read_curves(tmp_path) == []
    _write(tmp_path / "metrics.jsonl", '{"epoch": 0}\n\n{"epoch": 1}\n{"epoch": 2, "te')  # killed mid-line
    assert rundir.read_curves(tmp_path) == [{"epoch": 0}, {"epoch": 1}]
    _write(tmp_path / "metrics.jsonl", '{"epoch": 0}\n{"epo\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        rundir.read_curves(tmp_path)


def test_prepare_workdir_trains_unless_finished(tmp_path):
    config = {"seed": 0, "epochs": 2}
    assert rundir.prepare_workdir(tmp_path, config, overwrite=False) is None  # fresh
    _write(tmp_path / "summary.json", {"interrupted": "SIGTERM at epoch 1"})
    assert rundir.prepare_workdir(tmp_path, config, overwrite=False) is None  # resumes
    _write(tmp_path / "summary.json", {"best_epoch": 1, **METRICS})
    assert rundir.prepare_workdir(tmp_path, config, overwrite=False)["best_epoch"] == 1  # nothing to do
