"""What every stage CLI shares: its settings come in one way (:func:`add_settings_options`,
:func:`parse_settings`) and its parser shows defaults (:class:`StageArgumentParser`).

Settings sources, later wins: the schema's defaults < ``--config FILE`` (a whole pipeline config, e.g.
``config.yaml``; the stage takes its sections) < ``--settings JSON`` (the stage's sections as one JSON object: what
the Snakemake rule passes, :func:`pipeline.config.settings_json`) < ``--set KEY=VALUE`` (one dotted key, repeatable;
``--set featurize.k=8``). The merged settings are validated against the schema and :data:`pipeline.config.RULES`;
a violation is an argparse error (exit status 2) before the stage does any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml

from pipeline.config import ConfigError, ConfigNode, coerce_cli_strings, schema_node

N = TypeVar("N", bound=ConfigNode)


def parser(prog: str, description: str | None) -> StageArgumentParser:
    """A stage's parser: ``python -m pipeline STAGE``, its module docstring as description, defaults shown."""
    return StageArgumentParser(
        prog=f"python -m pipeline {prog}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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


class StageArgumentParser(argparse.ArgumentParser):
    """A stage's parser: ``--help`` shows every option's default (sub-command parsers made with
    ``add_subparsers`` are StageArgumentParsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)  # descriptions as written
        super().__init__(*args, **kwargs)
        self.formatter_class = _with_defaults(self.formatter_class)


def non_negative_int(text: str) -> int:
    """argparse type for options outside the config (``--member``, ``--shard-index``): an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is less than the minimum of 0")
    return value


def add_threads(p: argparse.ArgumentParser, help: str = "torch CPU threads (0: torch default)") -> None:  # noqa: A002
    """``--threads N``: an operational flag (the Snakemake job's threads)."""
    p.add_argument("--threads", type=non_negative_int, default=0, help=help)


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``: an operational flag; ``auto`` is CUDA when torch sees one."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")


def parse(
    p: argparse.ArgumentParser, argv: list[str] | None, settings: type[N]
) -> tuple[argparse.Namespace, N]:
    """``p.parse_args(argv)`` and the stage's settings (:func:`parse_settings`): what every stage's ``main`` starts
    with."""
    args = p.parse_args(argv)
    return args, parse_settings(p, args, settings)


def add_settings_options(p: argparse.ArgumentParser, settings: type[ConfigNode]) -> None:
    """``--config``, ``--settings`` and ``--set``: where the stage's settings (``settings``' fields) come from.
    ``--help`` lists every config key the stage reads with its schema default and description."""
    g = p.add_argument_group(
        "settings",
        "Sources, later wins: the schema's defaults (pipeline/config.schema.yaml) < --config < --settings < --set.\n"
        "The config keys this stage reads [schema default]:\n" + "\n".join(_key_lines(settings)),
    )
    g.add_argument(
        "--config", metavar="FILE", help="a pipeline config YAML (config.yaml); its sections above are used"
    )
    g.add_argument(
        "--settings",
        metavar="JSON",
        help='these sections as one JSON object (what the workflow passes), e.g. \'{"featurize": {"k": 8}}\'',
    )
    g.add_argument(
        "--set",
        dest="set_values",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one dotted config key, repeatable: --set featurize.k=8 (lists comma-separated or as JSON: --set properties.temperatures=100,300)",
    )


def _key_lines(settings: type[ConfigNode]) -> list[str]:
    lines = []
    for key in sorted(settings.config_keys()):
        node = schema_node(key)
        default = json.dumps(node["default"]) if "default" in node else "from model.preset"
        text = " ".join(str(node.get("description", "")).split())
        text = f": {text[:80]}..." if len(text) > 80 else (f": {text}" if text else "")
        lines.append(f"  {key} [{default}]{text}")
    return lines


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _types(node: dict[str, Any]) -> list[str]:
    types = node.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _assignment(text: str) -> dict[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"{text!r} is not KEY=VALUE")
    key = key.strip()
    node = schema_node(key)  # KeyError for an unknown key
    try:
        if raw.strip()[:1] in "[{":
            value = json.loads(raw)
        elif "array" in _types(node):  # a list as comma-separated values: --set split.fractions=0.8,0.1,0.1
            value = [] if not raw.strip() else coerce_cli_strings([v.strip() for v in raw.split(",")], node)
        else:
            value = coerce_cli_strings(raw, node)
    except ValueError as exc:
        raise ConfigError(key, f"{raw!r} is not valid JSON ({exc})") from None
    out: dict[str, Any] = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def parse_settings(p: argparse.ArgumentParser, args: argparse.Namespace, settings: type[N]) -> N:
    """The stage's settings from ``--config``/``--settings``/``--set`` (see the module docstring); any problem is
    ``p.error`` naming the config key."""
    wanted = {f.name for f in dataclasses.fields(settings)}
    values: dict[str, Any] = {}
    try:
        if args.config:
            with open(args.config) as fh:
                whole = yaml.safe_load(fh) or {}
            if not isinstance(whole, dict):
                raise ConfigError("--config", f"{args.config} does not hold a mapping")
            values = {k: v for k, v in whole.items() if k in wanted}
        if args.settings:
            given = json.loads(args.settings)
            if not isinstance(given, dict):
                raise ConfigError("--settings", f"must be a JSON object, got {args.settings!r}")
            values = _merge(values, given)
        for text in args.set_values:
            one = _assignment(text)
            if next(iter(one)) not in wanted:
                raise ConfigError(
                    text.partition("=")[0], f"not read by this stage (it reads {', '.join(sorted(wanted))})"
                )
            values = _merge(values, one)
        return settings.from_config(values)
    except OSError as exc:
        p.error(f"argument --config: cannot read {args.config}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        p.error(f"argument --config: {args.config} is not valid YAML: {exc}")
    except json.JSONDecodeError as exc:
        p.error(f"argument --settings: not valid JSON ({exc})")
    except KeyError as exc:
        p.error(f"argument --set: {exc.args[0]}")
    except ConfigError as exc:
        p.error(str(exc))
    raise AssertionError("unreachable")  # p.error exits
