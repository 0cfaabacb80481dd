"""The pipeline configuration: one schema (``config.schema.yaml``) for the workflow and every stage CLI.

- :func:`validate_config` / :func:`load_config`: coerce command-line strings, fill defaults, validate a whole
  config (``rules/common.smk`` runs it on Snakemake's ``config``) and check :data:`RULES`, the rules JSON schema
  cannot express (split fractions summing to 1, ...).
- :func:`schema_option` / :func:`schema_json_option`: a stage CLI option bound to a schema key (or a whole JSON
  section such as ``--train``): its type, choices, default and help come from the schema node and every value is
  validated against that node and :data:`RULES` while parsing (:class:`SchemaArgumentParser`), so a violation
  exits 2 with ``error: argument --k: ...`` before the stage does any work.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema
import yaml

if TYPE_CHECKING:
    from typing_extensions import Self

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
    workflow) and by every stage CLI that binds all its keys (:class:`SchemaArgumentParser`).

    ``check(*values, name=...)`` gets the values of ``keys`` (already valid against the schema) and returns what is
    wrong, or None; ``name(key)`` is how the message should call another key (the config key in the workflow, the
    option on a command line). The problem is reported at ``keys[0]``.
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


# ------------------------------------------------------------------ stage CLI options from the schema ---------
def schema_node(key: str) -> dict[str, Any]:
    """The schema of dotted config key ``key`` (``featurize.k``; ``train`` for the whole section)."""
    node = _schema()
    for part in key.split("."):
        props = node.get("properties", {})
        if part not in props:
            raise KeyError(f"no config key {key!r} in {SCHEMA_FILE}")
        node = props[part]
    return copy.deepcopy(node)


def value_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``value`` for config key ``key`` (its schema node, then the one-key :data:`RULES`),
    or None. Names a nested part (``train.epochs``) when ``key`` is a section."""
    e = _first_error(StrictValidator(schema_node(key)), value)
    if e is not None:
        return f"{e.message} (config key {_where(key, e.path)})"
    problems = rule_problems({key: value})
    return f"{problems[0][1]} (config key {key})" if problems else None


def check_values(values: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless every ``key: value`` satisfies its schema node and the :data:`RULES` whose
    keys all are in ``values``: the door check of a stage function called from Python (``run_shard(k=...)``)."""
    for key, value in values.items():
        e = _first_error(StrictValidator(schema_node(key)), value)
        if e is not None:
            raise ConfigError(_where(key, e.path), e.message)
    for key, problem in rule_problems(values):
        raise ConfigError(key, problem)


def validate_section(key: str, section: dict[str, Any], context: str = "") -> None:
    """Raise :class:`ConfigError` at the offending key when ``section`` breaks the schema of section ``key``."""
    e = _first_error(StrictValidator(schema_node(key)), section)
    if e is not None:
        raise ConfigError(_where(key, e.path), e.message + context)


def _json_types(node: dict[str, Any]) -> list[str]:
    types = node.get("type", [])
    return [types] if isinstance(types, str) else list(types)


class _SchemaAction(argparse.Action):
    """Stores the value after checking it against the schema node of ``schema_key`` (and its one-key rules)."""

    def __init__(self, option_strings: list[str], dest: str, schema_key: str, **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.schema_key = schema_key

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001 - argparse signature
        problem = value_problem(self.schema_key, values)
        if problem is not None:
            raise argparse.ArgumentError(self, problem)
        setattr(namespace, self.dest, values)


def shown_default(value: Any) -> str:
    """A default as ``--help`` shows it: list items space-separated (an empty list: none), JSON for objects."""
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


class _DefaultsShown:
    """Formatter mixin: an option's help ends with its default, unless the help already names one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and not action.required
            and action.nargs != 0  # flags: their default is "not given"
            and default is not None
            and default is not argparse.SUPPRESS
            and "default" not in text
        ):
            text = f"{text} (default: {shown_default(default).replace('%', '%%')})".lstrip()
        return text


_FORMATTERS: dict[type, type] = {}


def _with_defaults(formatter: type) -> type:
    if formatter not in _FORMATTERS:
        _FORMATTERS[formatter] = type(f"DefaultsShown{formatter.__name__}", (_DefaultsShown, formatter), {})
    return _FORMATTERS[formatter]


class SchemaArgumentParser(argparse.ArgumentParser):
    """The stage CLIs' parser: options from :func:`schema_option` are validated as they are parsed; once all are
    parsed, the :data:`RULES` whose keys are all bound here are checked (with the defaults of options not given).
    Any violation is an argparse error: usage, ``error: argument --OPTION: ...``, exit status 2. ``--help`` shows
    every option's default (sub-command parsers are SchemaArgumentParsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.formatter_class = _with_defaults(self.formatter_class)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001 - argparse signature
        namespace, extras = super().parse_known_args(args, namespace)
        bound = {a.schema_key: a for a in self._actions if isinstance(a, _SchemaAction)}
        values = {key: getattr(namespace, a.dest) for key, a in bound.items() if hasattr(namespace, a.dest)}

        def name(key: str) -> str:
            return option_name(bound[key]) if key in bound else key

        for key, problem in rule_problems(values, name):
            self.error(f"argument {name(key)}: {problem}")
        return namespace, extras


def option_name(action: argparse.Action) -> str:
    """The long option string of an action (``--min-distance``)."""
    return max(action.option_strings, key=len) if action.option_strings else action.dest


def bound_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Config key -> option of every schema-bound option of ``parser`` (not its subcommands)."""
    return {a.schema_key: a for a in parser._actions if isinstance(a, _SchemaAction)}


def _converter(node: dict[str, Any]) -> Callable[[str], Any]:
    types = _json_types(node)

    def convert(text: str) -> Any:
        # a string the schema type cannot take is kept as it is: the schema check then says "'x' is not of type"
        return coerce_cli_strings(text, node)

    convert.__name__ = "/".join(types) or "value"  # argparse names the type in some messages
    return convert


_FROM_SCHEMA = object()


def schema_option(
    parser: SchemaArgumentParser,
    *flags: str,
    key: str,
    help: str | None = None,  # noqa: A002 - argparse's name
    default: Any = _FROM_SCHEMA,
    **kwargs: Any,
) -> argparse.Action:
    """Add option ``flags`` bound to config key ``key``: type, ``choices`` (schema ``enum``), number of values
    (arrays: ``minItems``/``maxItems``), default and help (the schema ``description`` unless ``help`` is given)
    come from the schema node, and a given value must satisfy that node and the one-key :data:`RULES`.

    ``default`` overrides the schema default where a hand-run stage needs another one (it must satisfy the
    schema too); tests/test_cli_validation.py lists every such override.
    """
    if not isinstance(parser, SchemaArgumentParser):
        raise TypeError(f"schema_option needs a SchemaArgumentParser, got {type(parser).__name__}")
    node = schema_node(key)
    item = node
    if "array" in _json_types(node):
        item = node["items"]
        lo, hi = node.get("minItems", 0), node.get("maxItems")
        kwargs.setdefault("nargs", lo if lo == hi else ("+" if lo >= 1 else "*"))
    unsupported = set(_json_types(item)) - {"integer", "number", "string", "null"}
    if unsupported:
        raise TypeError(f"schema_option cannot bind {key!r} of type {sorted(unsupported)}")
    if default is _FROM_SCHEMA:
        default = copy.deepcopy(node.get("default"))
    else:
        problem = value_problem(key, default)
        if problem is not None:
            raise ValueError(f"default {default!r} of {flags[0]}: {problem}")
    if "enum" in item:
        kwargs.setdefault("choices", item["enum"])
    text = node.get("description", "") if help is None else help
    shown = (" ".join(map(str, default)) or "none") if isinstance(default, list) else default
    text = f"{text} (default: {shown}; config key {key})".lstrip()
    return parser.add_argument(
        *flags,
        action=_SchemaAction,
        schema_key=key,
        type=_converter(item),
        default=default,
        help=text.replace("%", "%%"),
        **kwargs,
    )


def _no_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def schema_json_option(
    parser: SchemaArgumentParser,
    *flags: str,
    key: str,
    help: str,  # noqa: A002 - argparse's name
    **kwargs: Any,
) -> argparse.Action:
    """Add option ``flags`` taking a JSON object that must satisfy the schema of section ``key`` (``train``):
    unknown keys, wrong types and out-of-range values are argparse errors naming the key. Default ``{}``."""
    if not isinstance(parser, SchemaArgumentParser):
        raise TypeError(f"schema_json_option needs a SchemaArgumentParser, got {type(parser).__name__}")
    if "object" not in _json_types(schema_node(key)):
        raise TypeError(f"config key {key!r} is not a section")

    def convert(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text, parse_constant=_no_json_constant)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"must be a JSON object (the {key} section), got {text!r}")
        return value

    convert.__name__ = "JSON object"
    return parser.add_argument(
        *flags,
        action=_SchemaAction,
        schema_key=key,
        type=convert,
        default={},
        metavar="JSON",
        help=f"{help} (a JSON object with the keys and rules of config key {key})".replace("%", "%%"),
        **kwargs,
    )


def non_negative_int(text: str) -> int:
    """argparse type for options outside the config (``--member``, ``--shard-index``): an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is less than the minimum of 0")
    return value


def config_file(path: str) -> dict[str, Any]:
    """argparse type of a ``--config`` option: the YAML file loaded and validated (:func:`load_config`), so a
    missing file or a config error is an argument error."""
    try:
        return load_config(path)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f"{path} is not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None


# ------------------------------------------------------------------ typed settings: schema -> frozen dataclass --
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
    def from_config(cls, values: Mapping[str, Any] | None = None) -> Self:
        node = cls._build(dict(values or {}))
        problems = rule_problems(node.flat())
        if problems:
            raise ConfigError(*problems[0])
        return node

    @classmethod
    def from_json(cls, text: str) -> Self:
        """:meth:`from_config` of a JSON object (what a rule passes to its stage)."""
        try:
            values = json.loads(text, parse_constant=_no_json_constant)
        except ValueError as exc:
            raise ConfigError(cls.KEY or "<settings>", f"not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ConfigError(cls.KEY or "<settings>", f"must be a JSON object, got {text!r}")
        return cls.from_config(values)

    @classmethod
    def _build(cls, values: dict[str, Any]) -> Self:
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
                kwargs[name] = sub._build(dict(values.get(name) or {}))
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


def settings_json(config: Mapping[str, Any], *keys: str) -> str:
    """The top-level ``keys`` of a validated config as one JSON object: what a rule hands its stage
    (``--settings``), parsed there by the stage's :class:`ConfigNode`."""
    return json.dumps({k: config[k] for k in keys}, sort_keys=True, separators=(",", ":"))
