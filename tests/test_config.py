"""Config schema: defaults, fail-fast errors naming the key, command-line string coercion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import coerce_cli_strings, load_config, schema, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["config.yaml", "config/demo.yaml"])
def test_committed_configs_validate(path):
    cfg = load_config(REPO / path)
    assert cfg["split"]["method"] in {"official", "random", "leakage_aware"}
    assert cfg["featurize"]["k"] >= 1


def test_defaults_are_filled():
    cfg = validate_config({})
    assert cfg["source"] == "figshare" and cfg["split"] == {
        "method": "official",
        "seed": 42,
        "fractions": [0.8, 0.1, 0.1],
    }


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ({"split": {"seeed": 1}}, "'split'"),
        ({"featurize": {"k": "twelve"}}, "'featurize.k'"),
        ({"source": "ftp"}, "'source'"),
        ({"bogus": 1}, "<top level>"),
    ],
)
def test_wrong_keys_and_types_fail_naming_the_key(override, where):
    with pytest.raises(ValueError, match=where):
        validate_config(override)


def test_cli_strings_are_coerced_to_schema_types():
    cfg = coerce_cli_strings(
        {
            "split": {"seed": "7", "fractions": ["0.7", "0.2", "0.1"]},
            "figshare": {"mirror": "null"},
            "local_path": "123",
        },
        schema(),
    )
    assert cfg == {
        "split": {"seed": 7, "fractions": [0.7, 0.2, 0.1]},
        "figshare": {"mirror": None},
        "local_path": "123",
    }


def test_schema_documents_every_top_level_key():
    sch = yaml.safe_load((REPO / "pipeline/config.schema.yaml").read_text())
    assert sch["additionalProperties"] is False
    assert all("default" in v for v in sch["properties"].values())


def test_atomic_outputs_honour_the_umask(tmp_path):
    import os

    from pipeline.io import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
