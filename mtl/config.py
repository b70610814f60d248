"""From a config file and command-line overrides to a resolved, validated config, and to library objects.

This is the edge where ``ml_collections`` configs meet the library (the rest of
``mtl`` never reads a config): :mod:`mtl.cli` uses it for ``mtl-train``,
:mod:`mtl.bench.cli` for each cell of ``mtl-bench``, and
:mod:`mtl.train.run` to build what a run trains. In order: loading
(:func:`load_config_file`), override parsing and typing (:func:`split_overrides`,
:func:`coerce`), the schema derived from the signatures of the chosen model,
balancer and data loader (:func:`model_params`, :func:`balancer_params`,
:func:`loader_params`), :func:`resolve`, :func:`validate`, and the builders
(:func:`build_model`, :func:`build_balancer`, :func:`build_optimizer`,
:func:`config_hash`).

Resolution, in order:

1. the config file's ``get_config(arg)``;
2. ``model.name``, ``balancer.name`` and ``data.name`` from the command line;
3. ``model.hparams``, ``balancer.hparams`` and ``data``: every keyword the
   selected model class, balancer factory and data loader take, with its
   default, overlaid with the file's values (values the file set for another
   model are dropped, with a note);
4. every ``--config.KEY=VALUE`` override, typed by the key's default
   (``int``, ``float``, ``bool``, ``str``, tuples as ``64,32`` or ``(64, 32)``;
   ``none`` for optional keys).

So ``config.json`` records every value a run used, defaults included, and any
hyperparameter of any method or model can be set from the command line.
Mistakes raise :class:`ConfigError` with one line naming the key, the value and
what is allowed (and the closest key for typos).
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import difflib
import hashlib
import importlib.util
import inspect
import json
import os
import pathlib
import sys
import types
import typing
from typing import Any

import ml_collections

HPARAM_PARENTS = ("model.hparams", "balancer.hparams")


class ConfigError(ValueError):
    """A config mistake, explained in one line."""


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """``path[:arg]`` -> ``get_config(arg)`` of that Python file."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"--config={spec}: no such file {path!r}")
    root = str(pathlib.Path(__file__).resolve().parents[1])
    for p in (os.getcwd(), root):  # config files import experiments.configs.common
        if p not in sys.path:
            sys.path.insert(0, p)
    module_spec = importlib.util.spec_from_file_location(f"_mtl_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - report any failure of the user's file in one line
        raise ConfigError(f"--config={spec}: loading {path} failed: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config={spec}: {path} defines no get_config(arg)")
    try:
        config = module.get_config(arg or None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--config={spec}: {e}") from None
    return config


# ---------------------------------------------------------------------------
# Override parsing and typing
# ---------------------------------------------------------------------------


def split_overrides(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Separates ``--config.KEY=VALUE`` (or ``--config.KEY VALUE``) from the other arguments."""
    overrides, rest = [], []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--config."):
            body = a[len("--config."):]
            if "=" in body:
                key, _, value = body.partition("=")
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                key, value = body, argv[i + 1]
                i += 1
            else:
                raise ConfigError(f"{a}: no value; write --config.{body}=VALUE")
            overrides.append((key, value))
        else:
            rest.append(a)
        i += 1
    return overrides, rest


def _optional_inner(annotation):
    """``Optional[X]`` / ``X | None`` -> ``X``; anything else unchanged."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _resolve_annotation(annotation, owner=None):
    if isinstance(annotation, str):
        try:
            module = sys.modules.get(getattr(owner, "__module__", ""), None)
            annotation = eval(annotation, {**typing.__dict__, **(vars(module) if module else {})})  # noqa: S307
        except Exception:  # noqa: BLE001
            return None
    return annotation


def coerce(key: str, text: str, default: Any, annotation: Any = None) -> Any:
    """Converts a command-line string to the type of ``default`` (or of ``annotation``)."""
    text = text.strip()
    annotation = _optional_inner(annotation) if annotation is not None else None
    if text.lower() in ("none", "null") and (default is None or annotation is not None):
        return None
    kind = type(default) if default is not None else annotation
    origin = typing.get_origin(kind) or kind
    try:
        if kind is bool or origin is bool:
            low = text.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if origin is int:
            return int(text)
        if origin is float:
            return float(text)
        if origin in (tuple, list, typing.Sequence, collections.abc.Sequence) or (
                isinstance(origin, type) and issubclass(origin, tuple)):
            elem = _element_type(default, annotation if annotation is not None else kind)
            items = _split_sequence(text)
            return tuple(coerce(key, x, elem() if elem in (int, float, str, bool) else None, elem) for x in items)
        if origin is str or kind is None:
            return text
    except ValueError:
        pass
    raise ConfigError(f"--config.{key}={text}: expected {_type_name(default, annotation)}")


def _element_type(default, kind):
    if isinstance(default, (tuple, list)) and default:
        return type(default[0])
    args = typing.get_args(kind)
    if args and args[0] is not Ellipsis:
        return args[0]
    return str


def _split_sequence(text: str) -> list[str]:
    if text in ("", "()", "[]"):
        return []
    if text[0] in "([" and text[-1] in ")]":
        try:
            value = ast.literal_eval(text)
            if not isinstance(value, (tuple, list)):
                value = (value,)
            return [str(v) for v in value]
        except (ValueError, SyntaxError):
            text = text[1:-1]
    return [x.strip() for x in text.split(",") if x.strip()]


def _type_name(default, annotation) -> str:
    if default is not None:
        if isinstance(default, bool):
            return "true or false"
        if isinstance(default, (tuple, list)):
            return f"a comma-separated list like {','.join(map(str, default)) or '1,2'}"
        return {int: "an integer", float: "a number", str: "a string"}.get(type(default), type(default).__name__)
    return getattr(annotation, "__name__", str(annotation))


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------
# What each model, balancer and loader takes
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Param:
    default: Any
    annotation: Any = None


def balancer_params(name: str) -> dict[str, Param]:
    import mtl.balancers as mb

    if name not in mb.REGISTRY:
        raise ConfigError(f"config.balancer.name={name!r}: unknown balancer; choose one of: "
                          f"{', '.join(sorted(mb.REGISTRY))}{_did_you_mean(name, mb.REGISTRY)}")
    factory = mb.REGISTRY[name]
    hints = typing.get_type_hints(factory) if hasattr(factory, "__annotations__") else {}
    return {k: Param(p.default, hints.get(k, _resolve_annotation(p.annotation, factory)))
            for k, p in inspect.signature(factory).parameters.items()
            if p.default is not inspect.Parameter.empty}


def model_params(name: str) -> dict[str, Param]:
    import mtl.models as mm

    try:
        params = mm.hyperparameters(name)
        cls = mm.model_class(name)
    except ValueError as e:
        raise ConfigError(f"config.model.name={name!r}: {e}{_did_you_mean(name, mm.REGISTRY)}") from None
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - user classes may have unresolvable hints
        hints = {}
    return {k: Param(None if p.default is inspect.Parameter.empty else p.default,
                     hints.get(k, _resolve_annotation(p.annotation, cls)))
            for k, p in params.items() if p.default is not inspect.Parameter.empty}


def loader_params(name: str) -> dict[str, Param]:
    import mtl.data as md

    if name not in md.LOADERS:
        raise ConfigError(f"config.data.name={name!r}: unknown dataset; choose one of: "
                          f"{', '.join(sorted(md.LOADERS))}{_did_you_mean(name, md.LOADERS)}")
    loader = md.LOADERS[name]
    try:
        hints = typing.get_type_hints(loader)
    except Exception:  # noqa: BLE001
        hints = {}
    return {k: Param(p.default, hints.get(k)) for k, p in inspect.signature(loader).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _plain_default(v):
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


# ---------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------


def resolve(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]] = (),
            notes: list[str] | None = None) -> ml_collections.ConfigDict:
    """Fills in every hyperparameter's default and applies typed overrides (see the module docstring)."""
    notes = [] if notes is None else notes
    base = config.to_dict()
    names = {"model": base.get("model", {}).get("name"), "balancer": base.get("balancer", {}).get("name"),
             "data": base.get("data", {}).get("name")}
    for key, value in overrides:
        for part in names:
            if key == f"{part}.name":
                names[part] = value.strip()
    base.setdefault("model", {})["name"] = names["model"]
    base.setdefault("balancer", {})["name"] = names["balancer"]
    base.setdefault("data", {})["name"] = names["data"]

    schemas = {"model.hparams": model_params(names["model"]), "balancer.hparams": balancer_params(names["balancer"]),
               "data": loader_params(names["data"])}
    for parent, schema in schemas.items():
        node = _get(base, parent, {}) or {}
        given = dict(node)
        if parent == "data":
            given.pop("name", None)
        unknown = sorted(set(given) - set(schema))
        if unknown and parent == "model.hparams":
            notes.append(f"note: model.hparams {', '.join(unknown)} in the config file do not apply to "
                         f"{names['model']!r}; dropped")
            for k in unknown:
                given.pop(k)
        elif unknown:
            what = "balancer " + repr(names["balancer"]) if parent.startswith("balancer") else \
                "dataset " + repr(names["data"])
            raise ConfigError(f"config.{parent}.{unknown[0]}: {what} takes no {unknown[0]!r}; it takes: "
                              f"{', '.join(sorted(schema)) or 'nothing'}{_did_you_mean(unknown[0], schema)}")
        resolved = {k: _plain_default(p.default) for k, p in schema.items()}
        resolved.update({k: _plain_default(v) for k, v in given.items()})
        if parent == "data":
            resolved = {"name": names["data"], **resolved}
        _set(base, parent, resolved)

    for key, text in overrides:
        if key in ("model.name", "balancer.name", "data.name"):
            continue
        if key.startswith("sweep."):
            _set(base.setdefault("sweep", {}), key[len("sweep."):], _sweep_values(key, text))
            continue
        parent, _, leaf = key.rpartition(".")
        if parent in schemas:
            schema = schemas[parent]
            if leaf not in schema:
                owner = {"model.hparams": f"model {names['model']!r}", "balancer.hparams":
                         f"balancer {names['balancer']!r}", "data": f"dataset {names['data']!r}"}[parent]
                raise ConfigError(f"--config.{key}={text}: {owner} takes no {leaf!r}; it takes: "
                                  f"{', '.join(sorted(schema)) or 'nothing'}{_did_you_mean(leaf, schema)}")
            p = schema[leaf]
            current = _get(base, key, p.default)
            _set(base, key, coerce(key, text, current if current is not None else p.default, p.annotation))
            continue
        node = base
        path = key.split(".")
        for i, part in enumerate(path):
            if not isinstance(node, dict) or part not in node:
                choices = node if isinstance(node, dict) else {}
                where = ".".join(path[:i]) or "the config"
                raise ConfigError(f"--config.{key}={text}: unknown key {part!r} in {where}"
                                  f"{_did_you_mean(part, choices)} (keys: experiments/configs/common.py)")
            if i < len(path) - 1:
                node = node[part]
        node[path[-1]] = coerce(key, text, node[path[-1]])
    return ml_collections.ConfigDict(base)


def _sweep_values(key: str, text: str) -> tuple[float, ...]:
    """``--config.sweep.PATH=1e-4,3e-4`` -> ``(0.0001, 0.0003)``."""
    try:
        values = tuple(float(x) for x in _split_sequence(text.strip()))
    except ValueError:
        values = ()
    if not values:
        raise ConfigError(f"--config.{key}={text}: expected comma-separated numbers, e.g. 1e-4,3e-4")
    return values


def _get(tree: dict, dotted: str, default=None):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _set(tree: dict, dotted: str, value) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


# ---------------------------------------------------------------------------
# Validation (before any data is read)
# ---------------------------------------------------------------------------


def seed_list(config) -> list[int] | None:
    """``seeds``: ``""``/``0``: one run with ``seed``; ``N``: seeds ``seed .. seed+N-1`` side by side;
    ``"0,3,7"``: those seeds."""
    raw = config.get("seeds", "")
    text = str(raw).strip() if raw is not None else ""
    if text in ("", "0", "None", "none"):
        return None
    try:
        if "," in text or text.startswith(("(", "[")):
            values = [int(x) for x in _split_sequence(text)]
        else:
            count = int(text)
            if count < 0:
                raise ValueError
            values = list(range(int(config.seed), int(config.seed) + count))
    except ValueError:
        raise ConfigError(f"config.seeds={raw!r}: expected a number of seeds (e.g. 5) or a list (e.g. 0,1,2)") \
            from None
    if len(set(values)) != len(values):
        raise ConfigError(f"config.seeds={raw!r}: seeds repeat")
    return values


#: Sweep paths that are optimizer hyperparameters (per-replica values in the optimizer state).
OPTIMIZER_SWEEP_KEYS = ("learning_rate", "weight_decay")


def _flatten(tree, prefix="") -> dict[str, Any]:
    out = {}
    for k, v in (tree.items() if isinstance(tree, dict) else ()):
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def sweep_axes(config) -> dict[str, tuple[float, ...]]:
    """``{path: values}`` of ``config.sweep`` in sorted path order (empty: no sweep), checked: each path is
    ``learning_rate``, ``weight_decay`` or a float hyperparameter of the balancer
    (``balancer.hparams.NAME``), each value a finite number.

    Any other key is refused: it changes the compiled program (shapes, iteration
    counts, control flow) or the data, so its values are separate runs.
    """
    raw = config.get("sweep", None)
    tree = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw or {})
    axes = {}
    resolved = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for path, values in sorted(_flatten(tree).items()):
        key = f"config.sweep.{path}"
        _check_sweep_path(path, key, resolved, config.balancer.name)
        values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{key}={values!r}: expected numbers, e.g. --config.sweep.{path}=0.1,0.2")
        values = tuple(float(v) for v in values)
        if not all(v == v and abs(v) != float("inf") for v in values):
            raise ConfigError(f"{key}={values!r}: values must be finite")
        if len(set(values)) != len(values):
            raise ConfigError(f"{key}={values!r}: values repeat")
        axes[path] = values
    return axes


def _check_sweep_path(path: str, key: str, resolved: dict, balancer: str) -> None:
    """Refuses a sweep path that is unknown, or known but not a per-replica value."""
    parts = path.split(".")
    node = resolved
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the config"
            choices = node if isinstance(node, dict) else {}
            raise ConfigError(f"{key}: unknown key {part!r} in {where}{_did_you_mean(part, choices)} "
                              f"(sweepable: {', '.join(OPTIMIZER_SWEEP_KEYS)}, balancer.hparams.NAME)")
        node = node[part]
    if path in OPTIMIZER_SWEEP_KEYS:
        return
    if parts[:2] == ["balancer", "hparams"] and len(parts) == 3:
        default = balancer_params(balancer)[parts[2]].default
        if isinstance(default, float):
            return
        raise ConfigError(f"{key}: balancer {balancer!r}'s {parts[2]!r} is not a float hyperparameter "
                          f"(default {default!r}); integer, boolean and string ones change the compiled program, "
                          "so train one run (or mtl-bench cell) per value instead")
    raise ConfigError(f"{key}: {path!r} cannot be swept in one program (only {', '.join(OPTIMIZER_SWEEP_KEYS)} "
                      "and float balancer.hparams.NAME are per-replica values; this one changes the compiled "
                      "program or the data), so train one run (or mtl-bench cell) per value instead")


def sweep_points(config) -> list[dict[str, float]]:
    """The points of ``config.sweep``: the Cartesian product of its axes, the paths in
    sorted order, the first varying slowest (``[]``: no sweep)."""
    import itertools

    axes = sweep_axes(config)
    if not axes:
        return []
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def point_config(config, point: dict[str, float]) -> ml_collections.ConfigDict:
    """``config`` at one point of its sweep: each path set to the point's value, no ``sweep``
    (the config of the same values trained alone)."""
    base = config.to_dict()
    for path, value in point.items():
        _set(base, path, value)
    base["sweep"] = {}
    return ml_collections.ConfigDict(base)


def run_json(config) -> dict:
    """The run's ``config.json``: the resolved config; ``sweep`` and ``sweep_memory_mb`` only
    when it sweeps (so a config without a sweep reads, and hashes, as before sweeps existed)."""
    out = plain(config)
    if not out.get("sweep"):
        out.pop("sweep", None)
        out.pop("sweep_memory_mb", None)
    return out


def _check_sweep_traceable(balancer: str, hparams: dict, name: str) -> None:
    """Raises when ``balancer`` cannot take ``name`` as a traced per-replica value
    (the factory or its functions turn it into a Python number or branch on it).

    Runs the factory, ``init``, ``update`` and ``after_update`` on stand-in inputs
    (two tasks); a failure other than a tracer conversion is left to the run itself
    (:func:`mtl.train.sweep.traced_balancer_errors` checks again with the real shapes)."""
    import warnings

    import jax
    import jax.numpy as jnp

    import mtl.balancers as mb
    from mtl.train.sweep import TRACER_ERRORS

    def trial(value):
        b = mb.REGISTRY[balancer](**{**hparams, name: value})  # not mb.get, which rewords a TypeError
        like = {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}
        state = b.init(2, grads_like=like) if b.init_takes_grads_like else b.init(2)
        k = b.num_batches
        losses = jnp.ones((k, 2) if k > 1 else (2,), jnp.float32)
        grads = {"w": jnp.ones(((k, 2, 3) if k > 1 else (2, 3)), jnp.float32)} if b.needs_grads else None
        _, weights, state = b.update(losses, grads, state, key=jax.random.key(0))
        if b.after_update is not None:
            state = b.after_update(state, losses[0] if k > 1 else losses, losses[0] if k > 1 else losses)
        return weights, state

    try:
        with warnings.catch_warnings():  # stand-alone use warns about run facts the run fills in
            warnings.simplefilter("ignore")
            jax.eval_shape(trial, jax.ShapeDtypeStruct((), jnp.float32))
    except TRACER_ERRORS as e:
        raise ConfigError(f"config.sweep.balancer.hparams.{name}: balancer {balancer!r} cannot take {name!r} as a "
                          "per-replica traced value (it branches on it in Python or converts it to a number: "
                          f"{str(e).splitlines()[0]}); train one run per value instead") from None
    except Exception:  # noqa: BLE001 - stand-in inputs that do not fit the method: the run checks again
        pass


def validate_sweep(config) -> None:
    """Checks ``config.sweep`` (see :func:`sweep_axes`), every point's config, and that the
    balancer can take each swept hyperparameter as a traced value."""
    points = sweep_points(config)
    if not points:
        return
    need_mb = config.get("sweep_memory_mb", 0)
    if not (isinstance(need_mb, (int, float)) and need_mb >= 0):
        raise ConfigError(f"config.sweep_memory_mb={need_mb!r}: must be >= 0 (0: automatic)")
    for point in points:
        validate(point_config(config, point))
    hparams = {k: v for k, v in config.balancer.hparams.to_dict().items() if v is not None}
    for path in points[0]:
        if path.startswith("balancer.hparams."):
            _check_sweep_traceable(config.balancer.name, hparams, path.rpartition(".")[2])


def validate(config) -> None:
    """Checks every value that can be checked without data; raises :class:`ConfigError`."""
    import mtl.balancers as mb
    import mtl.models as mm

    def need(ok, key, value, allowed):
        if not ok:
            raise ConfigError(f"config.{key}={value!r}: {allowed}")

    c = config
    need(isinstance(c.epochs, int) and c.epochs >= 1, "epochs", c.epochs, "must be a positive integer")
    need(isinstance(c.batch_size, int) and c.batch_size >= 1, "batch_size", c.batch_size,
         "must be a positive integer")
    need(c.eval_batch_size >= 1, "eval_batch_size", c.eval_batch_size, "must be a positive integer")
    need(c.learning_rate > 0, "learning_rate", c.learning_rate, "must be > 0")
    need(c.get("weight_decay", 0.0) >= 0, "weight_decay", c.get("weight_decay"), "must be >= 0")
    need(c.patience >= 0, "patience", c.patience, "must be >= 0 (0: no early stopping)")
    need(c.steps_per_call >= 1, "steps_per_call", c.steps_per_call, "must be a positive integer")
    need(c.select_by in ("auto", "auc", "loss"), "select_by", c.select_by, "must be 'auto', 'auc' or 'loss'")
    need(str(c.diagnostics) in ("", "epoch", "step"), "diagnostics", c.diagnostics, "must be '', 'epoch' or 'step'")
    need(c.get("on_nonfinite", "stop") in ("stop", "skip"), "on_nonfinite", c.get("on_nonfinite"),
         "must be 'stop' or 'skip'")
    need(c.get("num_devices", 0) >= 0, "num_devices", c.get("num_devices"), "must be >= 0 (0: every device)")
    need(c.get("checkpoint_every", 1) >= 0, "checkpoint_every", c.get("checkpoint_every"),
         "must be >= 0 (0: no checkpoints)")
    need(c.get("max_checkpoints", 2) >= 1, "max_checkpoints", c.get("max_checkpoints"), "must be >= 1")
    need(c.get("device_memory_budget_mb", 0) >= 0, "device_memory_budget_mb", c.get("device_memory_budget_mb"),
         "must be >= 0 (0: no limit)")
    seeds = seed_list(c)
    need(seeds is None or all(s >= 0 for s in seeds), "seeds", c.get("seeds"), "seeds must be >= 0")
    need(c.seed >= 0, "seed", c.seed, "must be >= 0")

    # model
    model_name = c.model.name
    try:
        mm.check(model_name, dict(c.model.hparams))
    except ValueError as e:
        raise ConfigError(f"config.model: {e}") from None
    # balancer: build it (hyperparameter values are checked by the factory)
    try:
        b = mb.get(c.balancer.name, **{k: v for k, v in c.balancer.hparams.to_dict().items()})
    except ValueError as e:
        raise ConfigError(f"config.balancer.hparams: {e}") from None
    if c.balancer.rep_grad and not b.rep_grad:
        raise ConfigError(f"config.balancer.rep_grad=True: balancer {b.name!r} is not defined on representation "
                          "gradients; methods that are: "
                          + ", ".join(sorted(n for n in mb.REGISTRY if mb.get(n).rep_grad)))
    if b.needs_grads:
        shared = _shared_parameter_count(model_name, dict(c.model.hparams), bool(c.balancer.balance_embeddings))
        if shared == 0:
            raise ConfigError(f"config.balancer.name={b.name!r}: model {model_name!r} has no shared parameters for "
                              "a gradient method to balance; use a loss-weighting method (ew, uw, dwa, rlw, gls, "
                              "famo, stch) or another model")
    # data options that can be checked without reading files
    d = c.data
    if "split" in d and d.split:
        from mtl.data.preprocess import parse_fractions

        try:
            parse_fractions(d.split)
        except ValueError as e:
            raise ConfigError(f"config.data.split={d.split!r}: {e}") from None
    if "validation_fraction" in d:
        need(0.0 < d.validation_fraction < 1.0, "data.validation_fraction", d.validation_fraction,
             "must be between 0 and 1")
    validate_sweep(c)


def _shared_parameter_count(name: str, hparams: dict, balance_embeddings: bool) -> int | None:
    """Shared parameters of a model built for stand-in data (None when it cannot be built without data)."""
    import jax

    import mtl.models as mm

    try:
        m = mm.get(name, num_tasks=2, num_numeric=2, vocab_sizes=(3,), task_names=("click", "conversion"), **hparams)
        shapes = jax.eval_shape(m.init, jax.random.key(0))
    except Exception:  # noqa: BLE001 - a model that needs real data to build is checked later
        return None
    parts = [shapes["shared"]] + ([shapes["embed"]] if balance_embeddings else [])
    return sum(len(jax.tree_util.tree_leaves(p)) for p in parts)


# ---------------------------------------------------------------------------
# From a resolved config to library objects
# ---------------------------------------------------------------------------


def plain(x: Any) -> Any:
    """ConfigDict / tuples -> JSON-able plain Python."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def kwargs_of(cfg) -> dict:
    d = plain(cfg) if cfg is not None else {}
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}


def build_optimizer(learning_rate: float, weight_decay: float = 0.0):
    import optax

    if weight_decay:
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    return optax.adam(learning_rate)


def build_model(config, data):
    """The configured model for ``data``'s shape (every ``model.hparams`` key is a constructor keyword)."""
    import mtl.models as mm

    return mm.get(config.model.name, num_tasks=len(data.tasks), num_numeric=len(data.numeric_names),
                  vocab_sizes=data.vocab_sizes, task_names=data.task_names, **kwargs_of(config.model.hparams))


def build_balancer(config):
    """The configured balancer; hyperparameters left ``None`` (run facts such as
    ``steps_per_epoch``) are filled in by the training loop."""
    import mtl.balancers as mb

    hparams = {k: v for k, v in kwargs_of(config.balancer.hparams).items() if v is not None}
    return mb.get(config.balancer.name, **hparams)


def config_hash(config) -> str:
    return hashlib.sha256(json.dumps(run_json(config), sort_keys=True).encode()).hexdigest()[:12]
