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


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and validate; raise ``ValueError`` naming the offending key."""
    cfg = copy.deepcopy(config)
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
