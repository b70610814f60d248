"""Run-directory naming and the commit stamp (mtl/rundir.py)."""

import json
import subprocess

import pytest

from mtl.rundir import git_commit, point_name, run_status


def test_point_name_spells_config_paths_sorted():
    assert point_name({"learning_rate": 0.001, "balancer.hparams.c": 0.4}) == \
        "balancer.hparams.c=0.4,learning_rate=0.001"
    assert point_name({"balancer.hparams.c": 0.4, "learning_rate": 0.001}) == \
        "balancer.hparams.c=0.4,learning_rate=0.001"
    assert point_name({"balancer.hparams.weights": (0.3, 0.7)}) == "balancer.hparams.weights=0.3:0.7"
    assert point_name({"weight_decay": 1e-05}) == "weight_decay=1e-05"


@pytest.mark.parametrize("values", [{}, {"label": "a/b"}, {"label": "a,b"}, {"x": "1 2"}])
def test_point_name_refuses_what_cannot_name_a_directory(values):
    with pytest.raises(ValueError, match="point_name"):
        point_name(values)


def test_git_commit_ignores_generated_results(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout[:12]
    assert git_commit(tmp_path) == head
    (tmp_path / "results" / "table.md").write_text("new\n")
    (tmp_path / "results" / "new.md").write_text("new\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "new_module.py").write_text("y = 1\n")  # code not yet committed
    assert git_commit(tmp_path) == head + "+dirty"
    (tmp_path / "new_module.py").unlink()
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"


def test_run_status_of_a_sweep_directory(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"sweep": {"learning_rate": [0.1, 0.2]},
                                                       "points": {"learning_rate=0.1": "finished",
                                                                  "learning_rate=0.2": "interrupted"}}))
    status = run_status(tmp_path)
    assert status.state == "interrupted" and "1 of 2 sweep points" in status.reason
    (tmp_path / "summary.json").write_text(json.dumps({"sweep": {"learning_rate": [0.1]},
                                                       "points": {"learning_rate=0.1": "finished"}}))
    assert run_status(tmp_path).finished
