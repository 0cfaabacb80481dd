"""Load and validate the pipeline configuration outside Snakemake (the Snakefile uses snakemake.utils.validate
with the same schema)."""

from __future__ import annotations

import copy
import os
from importlib import resources
from typing import Any

import jsonschema
import yaml

SCHEMA_FILE = "config.schema.yaml"


def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("pipeline").joinpath(SCHEMA_FILE).read_text())


def _validator_with_defaults() -> type[jsonschema.protocols.Validator]:
    base = jsonschema.Draft202012Validator

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


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Coerce command-line strings, fill defaults and validate; raise ``ValueError`` naming the offending key."""
    cfg = coerce_cli_strings(copy.deepcopy(config), schema())
    errors = sorted(_validator_with_defaults()(schema()).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "<top level>"
        raise ValueError(f"config error at '{where}': {e.message}")
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
