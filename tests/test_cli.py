"""The command line a researcher types: overrides that work for every method and model,
one clear line for every mistake, help text, and the README's command lines."""

import inspect
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
import typing

import pytest

import mtl.balancers as mb
import mtl.models as mm
from mtl import cli
from mtl import config as config_mod
from mtl.config import load_config_file, resolve

ROOT = pathlib.Path(__file__).resolve().parents[1]


SMOKE = "--config=experiments/configs/synthetic.py:smoke"


def _cli(capsys, *args):
    """Runs the real entry point in-process; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        cli.run(["mtl-train", *args])
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


@pytest.mark.parametrize("args,message", [
    (["--config.learning_rate=-1"], "error: config.learning_rate=-1.0: must be > 0"),
    (["--config.batch_size=0"], "error: config.batch_size=0: must be a positive integer"),
    (["--config.epochs=0"], "error: config.epochs=0: must be a positive integer"),
    (["--config.epochs=five"], "error: --config.epochs=five: expected an integer"),
    (["--config.patience=-1"], "error: config.patience=-1: must be >= 0"),
    (["--config.select_by=f1"], "error: config.select_by='f1': must be 'auto', 'auc' or 'loss'"),
    (["--config.diagnostics=always"], "error: config.diagnostics='always': must be '', 'epoch' or 'step'"),
    (["--config.on_nonfinite=ignore"], "error: config.on_nonfinite='ignore': must be 'stop' or 'skip'"),
    (["--config.seeds=many"], "error: config.seeds='many': expected a number of seeds"),
    (["--config.epoch=5"], "error: --config.epoch=5: unknown key 'epoch' in the config; did you mean 'epochs'?"),
    (["--config.model.name=mmeo"], "error: config.model.name='mmeo': unknown model 'mmeo'; choose one of:"),
    (["--config.balancer.name=pcgard"], "error: config.balancer.name='pcgard': unknown balancer; choose one of: "),
    (["--config.balancer.name=cagrad", "--config.balancer.hparams.cc=0.4"],
     "error: --config.balancer.hparams.cc=0.4: balancer 'cagrad' takes no 'cc'; it takes: c, "),
    (["--config.model.hparams.num_expert=4"],
     "error: --config.model.hparams.num_expert=4: model 'mmoe' takes no 'num_expert'; it takes:"),
    (["--config.balancer.name=cagrad", "--config.balancer.hparams.c=-1"], "error: config.balancer.hparams: "),
    (["--config.balancer.name=cagrad", "--config.balancer.rep_grad=True"],
     "error: config.balancer.rep_grad=True: balancer 'cagrad' is not defined on representation gradients"),
    (["--config.model.name=single_task", "--config.balancer.name=pcgrad"],
     "error: config.balancer.name='pcgrad': model 'single_task' has no shared parameters"),
    (["--config.model.name=nowhere.module:Model"],
     "error: config.model.name='nowhere.module:Model': cannot import module 'nowhere.module'"),
    (["--config.model.name=mtl.models:NoSuchModel"],
     "error: config.model.name='mtl.models:NoSuchModel': module 'mtl.models' has no 'NoSuchModel'"),
    (["--config.model.name=mtl.data.base:Split"], "error: config.model: model 'mtl.data.base:Split' is not a "),
    (["--config.data.num_trian=10"], "did you mean 'num_train'?"),
    (["--workdir"], "error: --workdir needs a value: --workdir=DIR (see mtl-train --help)"),
    (["--workdr=x"], "error: unknown argument '--workdr=x'; did you mean '--workdir'? (see mtl-train --help)"),
    (["--overwrite=maybe"], "error: --overwrite=maybe: expected true or false (see mtl-train --help)"),
    (["extra"], "error: unknown argument 'extra' (see mtl-train --help)"),
])
def test_every_mistake_is_one_line_with_status_2(capsys, tmp_path, args, message):
    status, out, err = _cli(capsys, SMOKE, f"--workdir={tmp_path}", *args)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(message) if message.startswith("error:") else message in lines[0], err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing read, nothing written


def test_mistakes_in_data_options_and_files(capsys, tmp_path):
    tab = "--config=experiments/configs/tabular.py"
    status, _, err = _cli(capsys, tab, f"--workdir={tmp_path}", "--config.data.path=x.csv",
                          "--config.data.label_columns=a", "--config.data.split=0.5,0.2,0.2")
    assert status == 2 and err.startswith("error: config.data.split='0.5,0.2,0.2': ") and "sum" in err
    status, _, err = _cli(capsys, "--config=nope.py", f"--workdir={tmp_path}")
    assert (status, err.strip()) == (2, "error: --config=nope.py: no such file 'nope.py'")
    status, _, err = _cli(capsys, f"--workdir={tmp_path}")
    assert status == 2 and err.startswith("error: --config=FILE[:ARG] is required")
    status, _, err = _cli(capsys, SMOKE)
    assert status == 2 and err.startswith("error: --workdir=DIR is required")
    status, _, err = _cli(capsys, "--config=experiments/configs/census_income.py:group3", f"--workdir={tmp_path}")
    assert status == 2 and err.startswith("error: --config=experiments/configs/census_income.py:group3: unknown config")
    status, _, err = _cli(capsys, tab, f"--workdir={tmp_path}", "--config.data.path=/no/such.csv",
                          "--config.data.label_columns=a")
    assert status == 2 and err.strip().splitlines() == ["error: /no/such.csv: file not found"]


def test_a_model_that_breaks_the_protocol_is_refused_before_data(capsys, tmp_path, monkeypatch):
    (tmp_path / "badmodels.py").write_text(textwrap.dedent("""
        from flax import linen as nn
        class NoEncode(nn.Module):
            num_tasks: int
            def features(self, numeric, categorical): return numeric
            def decode(self, z, h, train): return z
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    status, _, err = _cli(capsys, SMOKE, f"--workdir={tmp_path / 'w'}", "--config.model.name=badmodels:NoEncode")
    assert status == 2 and err.startswith("error: config.model: model 'badmodels:NoEncode' lacks method(s) encode")


def test_help_documents_config_and_workdir(capsys):
    for flag in ("--helpshort", "--help"):
        status, out, _ = _cli(capsys, flag)
        assert status == 0
        assert "--config=FILE[:ARG]" in out and "--workdir=DIR" in out and "experiments/configs/common.py" in out


def _hparam_alternative(default, annotation):
    """A value of the parameter's type that differs from its default."""
    if isinstance(default, bool):
        return not default, str(not default)
    if isinstance(default, int):
        return default + 3, str(default + 3)
    if isinstance(default, float):
        return default + 0.25, str(default + 0.25)
    if isinstance(default, str):
        return default + "x", default + "x"
    if isinstance(default, tuple):
        new = tuple(x + 1 for x in default) + (5,) if default else (5, 4)
        return new, ",".join(map(str, new))
    if default is None:  # typed by the annotation: True, 7, 7.0 or (7.0,)
        from mtl.config import _optional_inner, coerce

        if _optional_inner(annotation) is bool:
            return True, "true"
        value = coerce("x", "7", None, annotation)
        assert value in (7, 7.0, (7,), (7.0,)), (annotation, value)
        return value, "7"
    raise AssertionError((default, annotation))


@pytest.mark.parametrize("name", sorted(mb.REGISTRY))
def test_every_balancer_hyperparameter_reaches_the_factory(name, monkeypatch):
    hints = typing.get_type_hints(mb.REGISTRY[name])
    params = {k: p.replace(annotation=hints.get(k, p.annotation))
              for k, p in inspect.signature(mb.REGISTRY[name]).parameters.items()}
    if not params:  # nothing to set (ew)
        assert resolve(load_config_file(SMOKE.split("=", 1)[1]), [("balancer.name", name)]).balancer.hparams.to_dict() \
            == {}
        return
    seen = {}
    real = mb.REGISTRY[name]

    def spy(**kwargs):
        seen.update(kwargs)
        return real()

    base = load_config_file(SMOKE.split("=", 1)[1])
    for key, p in params.items():
        value, text = _hparam_alternative(p.default, p.annotation)
        config = resolve(base, [("balancer.name", name), (f"balancer.hparams.{key}", text)])
        assert config.balancer.hparams[key] == value
        monkeypatch.setitem(mb.REGISTRY, name, spy)
        seen.clear()
        config_mod.build_balancer(config)
        monkeypatch.setitem(mb.REGISTRY, name, real)
        assert seen[key] == value, (name, key)
        assert json.loads(json.dumps(config_mod.plain(config)))["balancer"]["hparams"][key] == \
            (list(value) if isinstance(value, tuple) else value)  # config.json records it


class _Data:
    tasks = ("a", "b")
    task_names = ("click", "conversion")
    numeric_names = ("x", "y", "z")
    vocab_sizes = (4, 5)


@pytest.mark.parametrize("name", sorted(mm.REGISTRY) + ["experiments.models.dcn_v2:DCNv2",
                                                        "experiments.models.deepfm_nnx:DeepFMBottom"])
def test_every_model_hyperparameter_reaches_the_module(name, monkeypatch):
    seen = {}
    monkeypatch.setattr(mm, "model_from_class", lambda cls, *, path, facts, hparams: seen.update(hparams))
    base = load_config_file(SMOKE.split("=", 1)[1])
    hparams = mm.hyperparameters(name)
    assert hparams, name
    for key, p in hparams.items():
        value, text = _hparam_alternative(p.default, p.annotation)
        config = resolve(base, [("model.name", name), (f"model.hparams.{key}", text)])
        seen.clear()
        config_mod.build_model(config, _Data)
        assert seen[key] == value, (name, key)
        assert set(seen) == set(hparams)  # every hyperparameter is passed, defaults included


def test_config_file_hparams_of_another_model_are_dropped_with_a_note():
    notes = []
    config = resolve(load_config_file("experiments/configs/census_income.py:mmoe"), [("model.name", "shared_bottom")],
                     notes)
    assert "num_experts" not in config.model.hparams and config.model.hparams.embed_dim == 8
    assert notes and "num_experts" in notes[0] and "shared_bottom" in notes[0]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            if "mtl-train" in line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def test_readme_commands_resolve(capsys, tmp_path, monkeypatch):
    """Every mtl-train command line in the README parses, resolves and validates as written."""
    commands = _readme_commands()
    assert len(commands) >= 4
    monkeypatch.chdir(ROOT)
    for cmd in commands:
        args = [a for a in cmd[cmd.index(next(a for a in cmd if a.endswith("mtl-train"))) + 1:]]
        status, out, err = _cli(capsys, *args, "--print_config")
        assert status == 0, (cmd, err)
        json.loads(out)


def test_console_script_prints_one_line_and_no_backend_noise(tmp_path):
    script = pathlib_script()
    r = subprocess.run([script, SMOKE, f"--workdir={tmp_path}", "--config.epoch=5"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: --config.epoch=5: unknown key 'epoch' in the config; did you "
                                             "mean 'epochs'? (keys: experiments/configs/common.py)"]
    r = subprocess.run([script, SMOKE, f"--workdir={tmp_path}", "--config.epochs=1", "--noprogress"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tpu" not in r.stderr.lower() and "backend" not in r.stderr.lower(), r.stderr
    assert "best epoch 0" in r.stdout and "stopped: epoch cap reached" in r.stdout


def pathlib_script():
    exe = os.path.join(os.path.dirname(sys.executable), "mtl-train")
    if not os.path.exists(exe):
        pytest.skip("the mtl-train console script is not installed in this environment")
    return exe


def test_a_rerun_compiles_nothing_new(tmp_path):
    """With the persistent compilation cache on (the default), the same run in another workdir
    loads every program from the cache: no compilation misses the second time."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax-cache")
    misses = []
    for name in ("first", "second"):
        r = subprocess.run([sys.executable, "-m", "mtl.train", "--config=experiments/configs/synthetic.py:smoke",
                            f"--workdir={tmp_path / name}", "--config.epochs=1", "--noprogress"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["compile_seconds"] > 0
        misses.append(summary["compile_cache_misses"])
    assert misses[0] > 0 and misses[1] == 0, misses
