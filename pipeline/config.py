"""The pipeline configuration: one schema (``config.schema.yaml``) for the workflow and every stage CLI.

- :func:`validate_config` / :func:`load_config`: coerce command-line strings, fill defaults, validate a whole
  config (``rules/common.smk`` runs it on Snakemake's ``config``) and check :data:`RULES`, the rules JSON schema
  cannot express (split fractions summing to 1, ...).
- :class:`ConfigNode`: the frozen dataclasses settings live in (one field per schema key, no defaults of their
  own); :func:`settings_json`: what a rule hands its stage. The stage CLIs read them through
  :mod:`pipeline.stages.common` (``--config`` / ``--settings`` / ``--set``), so a violation exits 2 naming the key
  before the stage does any work.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import shlex
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar, TypeVar

import jsonschema
import yaml

SCHEMA_FILE = "config.schema.yaml"


class ConfigError(ValueError):
    """A config value breaks the schema or a rule; ``key`` is its dotted path (``featurize.k``)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config error at '{key}': {problem}")
        self.key, self.problem = key, problem


def schema() -> dict[str, Any]:
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("pipeline").joinpath(SCHEMA_FILE).read_text())


def _finite_type(validator, types, instance, sch):  # noqa: ANN001 - jsonschema callback signature
    """JSON schema's ``type`` keyword, plus: a number must be finite (YAML ``.nan``/``.inf``, ``--cutoff inf``)."""
    yield from jsonschema.Draft202012Validator.VALIDATORS["type"](validator, types, instance, sch)
    if isinstance(instance, float) and not math.isfinite(instance):
        yield jsonschema.ValidationError(f"{instance!r} is not a finite number")


#: Draft 2020-12 with finite numbers; validates without filling defaults (CLI values, JSON sections).
StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"type": _finite_type})


def _validator_with_defaults() -> type[jsonschema.protocols.Validator]:
    base = StrictValidator

    def set_defaults(validator, properties, instance, sch):  # noqa: ANN001 - jsonschema callback signature
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, sch)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def _coerce_scalar(value: str, types: list[str]) -> Any:
    text = value.strip()
    if "null" in types and text.lower() in {"null", "none", "~"}:
        return None
    if "boolean" in types and text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for name, cast in (("integer", int), ("number", float)):
        if name in types:
            try:
                return cast(text)
            except ValueError:
                pass
    return value


def coerce_cli_strings(value: Any, sch: dict[str, Any]) -> Any:
    """Turn strings into the numbers/booleans/nulls the schema expects.

    ``snakemake --config 'split={seed: 7}'`` delivers nested values as strings; without this they would fail
    validation although the user wrote a number.
    """
    types = sch.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if isinstance(value, str) and "null" in types and value.strip().lower() in {"null", "none", "~"}:
        return None
    if isinstance(value, str) and "string" not in types:
        return _coerce_scalar(value, types)
    if isinstance(value, dict):
        props = sch.get("properties", {})
        return {k: coerce_cli_strings(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and isinstance(sch.get("items"), dict):
        return [coerce_cli_strings(v, sch["items"]) for v in value]
    return value


def _where(base: str, path: Sequence[Any]) -> str:
    """Dotted key of an error: ``featurize.k``, ``split.fractions[0]``."""
    out = base
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_error(
    validator: jsonschema.protocols.Validator, instance: Any
) -> jsonschema.ValidationError | None:
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path])
    return errors[0] if errors else None


def put_first_on_pythonpath(repo: str) -> str:
    """Put ``repo`` first on ``PYTHONPATH`` for the processes this one starts (rules/common.smk: every job then
    imports the ``pipeline`` package from the repository, also in a conda environment that does not install it);
    returns the new value."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != repo]
    os.environ["PYTHONPATH"] = os.pathsep.join([repo, *rest])
    return os.environ["PYTHONPATH"]


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Coerce command-line strings, fill defaults, validate and check :data:`RULES`; raise :class:`ConfigError`
    (a ``ValueError``) naming the offending key."""
    cfg = coerce_cli_strings(copy.deepcopy(config), _schema())
    e = _first_error(_validator_with_defaults()(_schema()), cfg)
    if e is not None:
        raise ConfigError(_where("", e.path) or "<top level>", e.message)
    values = {key: _lookup(cfg, key) for rule in RULES for key in rule.keys}
    for key, problem in rule_problems(values):
        raise ConfigError(key, problem)
    return cfg


def load_config(
    path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if path is not None:
        with open(path) as fh:
            cfg = yaml.safe_load(fh) or {}
    cfg.update(overrides or {})
    return validate_config(cfg)


# ------------------------------------------------------------------ rules JSON schema cannot express ----------
@dataclass(frozen=True)
class Rule:
    """A rule on one or more config keys that JSON schema cannot express, checked by :func:`validate_config` (the
    workflow) and by every :class:`ConfigNode` that holds all its keys (the stages' settings).

    ``check(*values, name=...)`` gets the values of ``keys`` (already valid against the schema) and returns what is
    wrong, or None; ``name(key)`` is how the message should call another key (its config key). The problem is reported at ``keys[0]``.
    """

    keys: tuple[str, ...]
    check: Callable[..., str | None]


def _fractions_sum_to_one(fractions: Sequence[float], name: Callable[[str], str]) -> str | None:
    total = math.fsum(fractions)
    if abs(total - 1.0) > 1e-6:
        return f"{list(fractions)} must sum to 1 (train, val, test), they sum to {total:.6g}"
    return None


def _min_distance_below_cutoff(min_distance: float, cutoff: float, name: Callable[[str], str]) -> str | None:
    if min_distance >= cutoff:
        return (
            f"{min_distance:g} must be smaller than {name('featurize.cutoff')} ({cutoff:g}): every bond within "
            "the cutoff would be an overlap"
        )
    return None


def _evaluated_split_is_predicted(
    split: str, sets: Sequence[str], use_predictions: bool, name: Callable[[str], str]
) -> str | None:
    if use_predictions and split not in sets:
        return f"{split!r} must be one of {name('predict.sets')} {list(sets)}: only those are predicted"
    return None


RULES: tuple[Rule, ...] = (
    Rule(("split.fractions",), _fractions_sum_to_one),
    Rule(("featurize.min_distance", "featurize.cutoff"), _min_distance_below_cutoff),
    Rule(("evaluate.split", "predict.sets", "properties.use_predictions"), _evaluated_split_is_predicted),
)


def rule_problems(
    values: Mapping[str, Any], name: Callable[[str], str] = lambda key: key
) -> list[tuple[str, str]]:
    """``(key, problem)`` for every rule of :data:`RULES` whose keys all are in ``values`` and that fails."""
    problems = []
    for rule in RULES:
        if all(key in values for key in rule.keys):
            problem = rule.check(*(values[key] for key in rule.keys), name=name)
            if problem is not None:
                problems.append((rule.keys[0], problem))
    return problems


def _lookup(cfg: Mapping[str, Any], key: str) -> Any:
    value: Any = cfg
    for part in key.split("."):
        value = value[part]
    return value


# ------------------------------------------------------------------ schema nodes ------------------------------
def schema_node(key: str) -> dict[str, Any]:
    """The schema of dotted config key ``key`` (``featurize.k``; ``train`` for the whole section)."""
    node = _schema()
    for part in key.split("."):
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"no config key {key!r} in {SCHEMA_FILE}")
        node = props[part]
    return copy.deepcopy(node)


def _no_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


# ------------------------------------------------------------------ typed settings: schema -> frozen dataclass --
_Node = TypeVar("_Node", bound="ConfigNode")


class ConfigNode:
    """Mixin of the frozen dataclasses that hold validated settings: one field per schema key below ``KEY``.

    A config section (``featurize``) is a ConfigNode with ``KEY = "featurize"``; a stage's settings are a ConfigNode
    with ``KEY = ""`` whose fields are the top-level keys the stage reads (sections are fields typed with their
    ConfigNode). :meth:`from_config` takes a (partial) mapping, fills the schema's defaults, validates it against the
    schema and :data:`RULES` and builds the dataclass: the one way settings enter a stage, so defaults live in the
    schema alone. A key without a schema default (``model``/``train`` keys a preset supplies) is None until resolved.
    Arrays become tuples (the dataclasses are frozen); :meth:`to_config` turns an instance back into plain JSON data.
    """

    KEY: ClassVar[str] = ""

    @classmethod
    def from_config(cls: type[_Node], values: Mapping[str, Any] | None = None) -> _Node:
        node = cls._build(dict(values or {}))
        problems = rule_problems(node.flat())
        if problems:
            raise ConfigError(*problems[0])
        return node

    @classmethod
    def from_json(cls: type[_Node], text: str) -> _Node:
        """:meth:`from_config` of a JSON object (what a rule passes to its stage)."""
        try:
            values = json.loads(text, parse_constant=_no_json_constant)
        except ValueError as exc:
            raise ConfigError(cls.KEY or "<settings>", f"not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ConfigError(cls.KEY or "<settings>", f"must be a JSON object, got {text!r}")
        return cls.from_config(values)

    @classmethod
    def _build(cls: type[_Node], values: dict[str, Any]) -> _Node:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(names))
        if unknown:
            where = _where(cls.KEY, [unknown[0]])
            raise ConfigError(where, f"not a setting of this stage (it reads {', '.join(names)})")
        if cls.KEY:  # a section: the schema checks unknown keys, types and ranges, and fills the defaults
            values = coerce_cli_strings(values, schema_node(cls.KEY))
            e = _first_error(_validator_with_defaults()(schema_node(cls.KEY)), values)
            if e is not None:
                raise ConfigError(_where(cls.KEY, e.path), e.message)
        kwargs = {}
        for name in names:
            sub = _node_type(hints[name])
            key = _where(cls.KEY, [name])
            if sub is not None:
                part = values.get(name) or {}
                if not isinstance(part, Mapping):
                    raise ConfigError(key, f"{part!r} is not of type 'object' (a section)")
                kwargs[name] = sub._build(dict(part))
                continue
            if name in values:
                value = values[name]
            else:
                value = copy.deepcopy(schema_node(key).get("default"))
            if not cls.KEY and value is not None:
                value = coerce_cli_strings(value, schema_node(key))
                e = _first_error(StrictValidator(schema_node(key)), value)
                if e is not None:
                    raise ConfigError(_where(key, e.path), e.message)
            kwargs[name] = _frozen(value)
        return cls(**kwargs)

    @classmethod
    def config_keys(cls) -> list[str]:
        """The dotted config keys this node's fields hold (sections recursively), in field order."""
        hints = typing.get_type_hints(cls)
        keys: list[str] = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            sub = _node_type(hints[f.name])
            keys += sub.config_keys() if sub is not None else [_where(cls.KEY, [f.name])]
        return keys

    def flat(self) -> dict[str, Any]:
        """Dotted config key -> value of every setting held (sections recursively)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, ConfigNode):
                out.update(value.flat())
            else:
                out[_where(self.KEY, [f.name])] = value
        return out

    def to_config(self) -> dict[str, Any]:
        """Plain JSON data (lists, dicts): ``type(x).from_config(x.to_config()) == x``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = value.to_config() if isinstance(value, ConfigNode) else _thawed(value)
        return out


def _node_type(hint: Any) -> type[ConfigNode] | None:
    return hint if isinstance(hint, type) and issubclass(hint, ConfigNode) else None


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return types.MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    return value


def settings_json(
    config: Mapping[str, Any],
    *keys: str,
    only: Mapping[str, Sequence[str]] | None = None,
    without: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """What a rule hands its stage (``--settings``): the top-level ``keys`` of a validated config as one JSON object,
    parsed there by the stage's :class:`ConfigNode`.

    ``only={"predict": ["batch_size"]}`` passes just those keys of a section, ``without={"train": ["ensemble"]}``
    all but those: a job then reruns only when a key it uses changes (Snakemake compares params); the keys left out
    are at their schema defaults in the stage, which does not read them.
    """
    only, without = dict(only or {}), dict(without or {})
    out: dict[str, Any] = {k: config[k] for k in keys}
    for section, names in only.items():
        out[section] = {k: config[section][k] for k in names}
    for section, names in without.items():
        out[section] = {k: v for k, v in out.get(section, config[section]).items() if k not in set(names)}
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def settings_arg(config: Mapping[str, Any], *keys: str, **kwargs: Any) -> str:
    """:func:`settings_json` quoted for a shell command line (a rule's ``params.settings``)."""
    return shlex.quote(settings_json(config, *keys, **kwargs))
