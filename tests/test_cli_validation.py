"""Stages refuse nonsense at the door: every stage CLI validates its arguments by the config schema's rules
(pipeline/config.schema.yaml plus pipeline.config.RULES), exits 2 naming the option before doing any work, and its
schema-bound options cannot drift from the schema (defaults, bounds, the keys the workflow passes)."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.config import (
    RULES,
    ConfigError,
    bound_options,
    option_name,
    schema_node,
    validate_config,
)
from pipeline.grid import N_BINS
from pipeline.schemas import MATERIALS

REPO = Path(__file__).resolve().parents[1]

#: options whose default deliberately differs from the schema default (by hand, one shard per split is natural;
#: the workflow always passes featurize.n_shards). A new entry here is a decision, not drift.
DEFAULT_OVERRIDES = {("featurize", "--n-shards"): 1}
#: schema keywords that make a value invalid (a node with none of them, like a free string, has nothing to violate)
RULE_WORDS = {
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "enum",
    "const",
    "pattern",
    "minLength",
}
#: config keys the rules/*.smk files read without passing them to a stage option (paths, workflow switches)
WORKFLOW_ONLY = {
    "results_dir",
    "data_dir",
    "local_path",
    "predict.sets",
    "predict.model",  # the predict rules' --model input (null: the trained ensemble; shipped: the packaged model)
    "properties.use_predictions",
    "evaluate.direct_baselines",
    "crossval.source",  # the rule's switch: --mp {crossval.path} or --mp-api
    "crossval.path",
    "crossval.model",  # the rule's --model input (null: the trained ensemble)
    "screen.pool",  # the rule's switch: screen results/dos/pool.parquet
    "screen.path",  # the screen_user rule's input, passed as screen's positional PATH
}
#: for every rule of pipeline.config.RULES: values (the others at their defaults) that break it
RULE_VIOLATIONS = {
    "split.fractions": {"split.fractions": [0.5, 0.2, 0.2]},
    "featurize.min_distance": {"featurize.min_distance": 9.0},
    "evaluate.split": {"evaluate.split": "val"},
}


# ----------------------------------------------------------------------------------------- helpers ----------
def stage_parsers() -> list[tuple[str, list[str], argparse.ArgumentParser, argparse.ArgumentParser]]:
    """(stage, argv prefix, stage parser, parser) for every stage parser and subcommand parser: ``parser`` holds
    the options, the stage parser parses ``prefix + options`` (``predict shard ...``)."""
    out = []
    for stage, (module, _) in cli.STAGES.items():
        top = importlib.import_module(module).build_parser()
        out.append((stage, [], top, top))
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [(stage, [name], top, sub) for name, sub in action.choices.items()]
    return out


def required_argv(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the required options (parsing never opens files)."""
    needed = [a for a in parser._actions if a.required and a.option_strings]
    needed += [g._group_actions[0] for g in parser._mutually_exclusive_groups if g.required]
    argv = []
    for a in needed:
        argv.append(a.option_strings[0])
        if a.nargs != 0:
            argv.append(a.choices[0] if a.choices else "x")
    return argv


def bound() -> list[
    tuple[str, list[str], argparse.ArgumentParser, argparse.ArgumentParser, str, argparse.Action]
]:
    return [
        (stage, prefix, top, parser, key, action)
        for stage, prefix, top, parser in stage_parsers()
        for key, action in bound_options(parser).items()
    ]


def _cli_text(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def scalar_violations(node: dict[str, Any]) -> list[Any]:
    """Values (Python, as JSON would carry them) that break a scalar schema node."""
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    bad: list[Any] = []
    if "integer" in types:
        bad.append(1.5)
    if {"integer", "number"} & set(types):
        bad.append("x")
        for word, shift in (
            ("minimum", -1),
            ("exclusiveMinimum", 0),
            ("maximum", 1),
            ("exclusiveMaximum", 0),
        ):
            if word in node:
                bad.append(node[word] + shift)
    if "enum" in node:
        bad.append("not-a-choice")
    if "const" in node:
        bad.append(node["const"] + 1)
    if "pattern" in node:
        bad.append("no such id!")
    if node.get("minLength"):
        bad.append("")
    return bad


def has_rule(node: dict[str, Any]) -> bool:
    item = node.get("items", node)
    return bool(RULE_WORDS & set(item)) or bool({"integer", "number", "object"} & set(_cli_types(item)))


def cli_violations(key: str) -> list[list[str]]:
    """Command-line values that break the schema node of ``key`` (and its one-key rules)."""
    node = schema_node(key)
    if node.get("type") == "object":  # a JSON section: out-of-range values of each key and an unknown key
        out = [["{bad"], ["[1]"], [json.dumps({"no_such_key": 1})], ['{"x": NaN}']]
        for name, sub in node["properties"].items():
            out += [[json.dumps({name: v})] for v in scalar_violations(sub)]
        return out
    if node.get("type") != "array":
        out = [_cli_text(v) for v in scalar_violations(node)]
        if "number" in _cli_types(node):
            out += [["nan"], ["inf"]]
        return out
    default = list(node["default"])
    out = [_cli_text([v, *default[1:]]) for v in scalar_violations(node["items"])]
    if "minItems" in node and node["minItems"] == node.get("maxItems"):
        out.append(_cli_text(default[:-1]))
    if node.get("uniqueItems"):
        out.append(_cli_text([default[0], *default]))
    out += [_cli_text(v[key]) for k, v in RULE_VIOLATIONS.items() if k == key]
    return out


def _cli_types(node: dict[str, Any]) -> list[str]:
    types = node.get("type", [])
    return [types] if isinstance(types, str) else types


def materials_parquet(path: Path, n: int = 4) -> Path:
    """A MATERIALS table of fcc Cu cells (train split, seeded DOS)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, a in enumerate(np.linspace(3.5, 3.7, n)):
        rows.append(
            {
                "jid": f"JVASP-{100 + i}",
                "split": "train",
                "dos": rng.random(N_BINS).astype(np.float32).tolist(),
                "lattice_mat": (np.eye(3) * a).tolist(),
                "frac_coords": [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                "elements": ["Cu"] * 4,
            }
        )
    cols = {name: [r.get(name) for r in rows] for name in MATERIALS.names}
    pq.write_table(pa.table(cols, schema=MATERIALS), path)
    return path


def labelled_shard(path: Path, n: int = 4) -> Path:
    from pipeline.data.graphs import build_graph
    from pipeline.data.shards import write_shard

    rng = np.random.default_rng(1)
    graphs = [
        build_graph(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], ["Na", "Cl"]) for a in (5.5, 5.6, 5.7, 5.8)
    ]
    write_shard(path, [f"NaCl-{i}" for i in range(n)], graphs[:n], rng.random((n, N_BINS)).astype(np.float32))
    return path


def exit_code_and_error(main, argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


# ------------------------------------------------------------------------------------- the cases ----
def test_featurize_bad_k_exits_naming_the_option_before_reading_input(tmp_path, capsys):
    from pipeline.data.featurize import main

    data = materials_parquet(tmp_path / "dataset.parquet")
    out, rej = tmp_path / "bad/shard-0.h5", tmp_path / "bad/rejects-0.parquet"
    argv = [
        "--split",
        "train",
        "--input",
        str(data),
        "--out",
        str(out),
        "--rejects",
        str(rej),
        "--no-progress",
    ]
    code, err = exit_code_and_error(main, [*argv, "--k", "-3"], capsys)
    readme = (REPO / "README.md").read_text().replace("\n", " ")
    example = re.search(r"`(error: argument --k: [^`]+)`", readme).group(1)  # what the README promises
    assert code == 2 and example in err
    assert not (tmp_path / "bad").exists()
    # the same command with a valid k featurises every material: the input was fine, only --k was not
    good = ["--out", str(tmp_path / "s.h5"), "--rejects", str(tmp_path / "r.parquet")]
    assert main([*argv[:4], *good, "--no-progress", "--k", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["n_graphs"] == 4


def test_run_shard_checks_its_arguments_before_reading_input(tmp_path):
    from pipeline.data.featurize import run_shard

    with pytest.raises(ConfigError, match="featurize.k"):
        run_shard(
            tmp_path / "does-not-exist.parquet",
            "train",
            0,
            tmp_path / "s.h5",
            tmp_path / "r.parquet",
            featurize_settings(n_shards=1, k=-3),
        )
    with pytest.raises(ConfigError, match="featurize.min_distance"):
        run_shard(
            tmp_path / "nope.parquet",
            "train",
            0,
            tmp_path / "s.h5",
            tmp_path / "r",
            featurize_settings(n_shards=1, min_distance=8.0),
        )
    assert list(tmp_path.iterdir()) == []


def test_train_epochs_zero_exits_naming_epochs_and_writes_no_model(tmp_path, capsys):
    from pipeline.nn.train import main

    shard = labelled_shard(tmp_path / "train.h5")
    argv = ["--train-shards", str(shard), "--val-shards", str(shard), "--device", "cpu", "--no-progress"]
    model = '{"preset": "demo", "hidden_features": 8, "embedding_features": 8}'
    bad = tmp_path / "bad"
    code, err = exit_code_and_error(
        main, [*argv, "--out-dir", str(bad), "--model", model, "--train", '{"epochs": 0}'], capsys
    )
    assert code == 2 and "argument --train: 0 is less than the minimum of 1 (config key train.epochs)" in err
    assert not bad.exists()
    # one epoch on the same shards writes model.pt: only the epochs were wrong
    good = tmp_path / "good"
    assert (
        main([*argv, "--out-dir", str(good), "--model", model, "--train", '{"epochs": 1, "batch_size": 2}'])
        == 0
    )
    assert (good / "model.pt").exists()


def test_a_preset_cannot_sneak_in_nonsense(tmp_path, capsys, monkeypatch):
    from pipeline.nn import presets
    from pipeline.nn.train import main

    monkeypatch.setitem(presets.PRESETS["demo"]["train"], "epochs", 0)
    shard = labelled_shard(tmp_path / "train.h5")
    argv = ["--train-shards", str(shard), "--val-shards", str(shard), "--out-dir", str(tmp_path / "out")]
    code, err = exit_code_and_error(main, [*argv, "--model", '{"preset": "demo"}'], capsys)
    assert code == 2 and "argument --train: 0 is less than the minimum of 1 (preset 'demo'" in err
    assert "config key train.epochs" in err and not (tmp_path / "out").exists()
    # an explicit override of the bad preset value is fine (and checked the same way)
    assert presets.resolve({"preset": "demo"}, {"epochs": 2})[1]["epochs"] == 2


def test_train_config_file_is_validated_at_the_door(tmp_path, capsys):
    from pipeline.nn.train import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {lr: -1}\n")
    argv = ["--train-shards", "a.h5", "--val-shards", "b.h5", "--out-dir", str(tmp_path / "out")]
    code, err = exit_code_and_error(main, [*argv, "--config", str(cfg)], capsys)
    assert code == 2 and "argument --config:" in err and "'train.lr'" in err
    code, err = exit_code_and_error(main, [*argv, "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "argument --config: cannot read" in err


def test_split_fractions_must_sum_to_one_in_the_workflow_config_and_the_dos_cli(tmp_path, capsys):
    from pipeline.data.dos import main

    with pytest.raises(
        ConfigError, match=r"config error at 'split.fractions': \[0.5, 0.2, 0.2\] must sum to 1"
    ):
        validate_config({"split": {"method": "random", "fractions": [0.5, 0.2, 0.2]}})
    argv = [
        "--fetch-dir",
        str(tmp_path / "fetch"),
        "--out-dir",
        str(tmp_path / "dos"),
        "--split-method",
        "random",
    ]
    code, err = exit_code_and_error(main, [*argv, "--fractions", "0.5", "0.2", "0.2"], capsys)
    assert code == 2 and "argument --fractions: [0.5, 0.2, 0.2] must sum to 1" in err
    assert not (tmp_path / "dos").exists()
    assert validate_config({"split": {"fractions": [0.7, 0.2, 0.1]}})["split"]["fractions"] == [0.7, 0.2, 0.1]


@pytest.mark.skipif(
    shutil.which("snakemake") is None and not (REPO / ".venv/bin/snakemake").exists(), reason="no snakemake"
)
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("featurize={k: x}", None),  # None: the example the README gives
        (
            "split={fractions: [0.5, 0.2, 0.2]}",
            "config error at 'split.fractions': [0.5, 0.2, 0.2] must sum to 1",
        ),
        ("train={epochs: 0}", "config error at 'train.epochs': 0 is less than the minimum of 1"),
    ],
)
def test_workflow_stops_with_the_config_error_the_readme_shows(override, message):
    if message is None:
        readme = (REPO / "README.md").read_text()
        message = re.search(r"\(`(config error at 'featurize\.k': [^`]+)`\)", readme).group(1)
    exe = shutil.which("snakemake") or str(REPO / ".venv/bin/snakemake")
    r = subprocess.run(
        [exe, "-n", "--configfile", "config/demo.yaml", "--config", override],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0 and message in r.stdout + r.stderr


# ------------------------------------------------------------------------------ every option, no drift -------
def test_every_stage_has_a_schema_parser():
    parsers = stage_parsers()
    assert {stage for stage, *_ in parsers} == set(cli.STAGES)
    for stage, prefix, _, parser in parsers:
        assert type(parser).__name__ == "SchemaArgumentParser", (stage, prefix)


def test_bound_option_defaults_equal_the_schema_defaults():
    seen = set()
    for stage, *_, key, action in bound():
        expected = DEFAULT_OVERRIDES.get((stage, option_name(action)), schema_node(key).get("default", {}))
        if (stage, option_name(action)) in DEFAULT_OVERRIDES:
            seen.add((stage, option_name(action)))
        assert action.default == expected, (stage, key, action.default, expected)
        assert f"config key {key}" in action.help, (stage, key)
    assert seen == set(DEFAULT_OVERRIDES)


@pytest.mark.parametrize(
    "case", bound(), ids=lambda c: f"{c[0]}{''.join(' ' + p for p in c[1])} {option_name(c[5])}"
)
def test_bound_options_reject_what_the_schema_rejects(case, capsys):
    stage, prefix, top, parser, key, action = case
    flag = option_name(action)
    argv = [*prefix, *required_argv(parser)]
    violations = cli_violations(key)
    assert violations or not has_rule(schema_node(key)), f"{flag}: no value breaks {key}?"
    for bad in violations:
        with pytest.raises(SystemExit) as exc:
            top.parse_args([*argv, flag, *bad])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"argument {flag}:" in err, (flag, bad, err)
    # the schema default, given explicitly, is accepted (the check is not simply "reject everything")
    default = action.default
    if isinstance(default, dict):
        given = [json.dumps(default)]
    elif default is None:
        given = ["null"]
    else:
        given = _cli_text(default)
    ns = top.parse_args([*argv, flag, *given])
    assert getattr(ns, action.dest) == default


def test_every_rule_is_enforced_by_the_workflow_and_every_cli_that_binds_its_keys(capsys):
    assert {rule.keys[0] for rule in RULES} == set(RULE_VIOLATIONS)
    for rule in RULES:
        values = RULE_VIOLATIONS[rule.keys[0]]
        cfg: dict[str, Any] = {}
        for key, value in values.items():
            section, name = key.split(".")
            cfg.setdefault(section, {})[name] = value
        with pytest.raises(ConfigError) as exc:
            validate_config(cfg)
        assert exc.value.key == rule.keys[0]
        for stage, prefix, top, parser in stage_parsers():
            options = bound_options(parser)
            if not all(key in options for key in rule.keys):
                continue
            argv = [*prefix, *required_argv(parser)]
            for key, value in values.items():
                argv += [option_name(options[key]), *_cli_text(value)]
            with pytest.raises(SystemExit):
                top.parse_args(argv)
            assert f"argument {option_name(options[rule.keys[0]])}:" in capsys.readouterr().err, stage


def test_every_config_value_the_workflow_passes_to_a_stage_is_schema_bound():
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    used = {".".join(m) if m[1] else m[0] for m in re.findall(r'config\["(\w+)"\](?:\["(\w+)"\])?', text)}
    keys = {key for *_, key, _ in bound()}
    # keys inside a section bound as a whole (--model/--train JSON) are bound too
    covered = {k for k in used if k in keys or k.split(".")[0] in keys}
    assert used - covered == WORKFLOW_ONLY
    for key in WORKFLOW_ONLY | used:
        schema_node(key)  # every key the workflow reads exists in the schema


# ------------------------------------------------------------------- code defaults agree with the schema -----
def test_python_defaults_agree_with_the_schema():
    from pipeline.data.graphs import DEFAULT_MIN_DISTANCE
    from pipeline.data.leakage import DUPLICATE_MAE
    from pipeline.nn.model import ModelConfig
    from pipeline.nn.presets import PRESETS, resolve
    from pipeline.nn.train import TrainConfig
    from pipeline.physics.properties import DEFAULT_TEMPERATURES
    from pipeline.reports.evaluate import DEFAULT_DEBYE_FRACTIONS

    assert DEFAULT_TEMPERATURES == schema_node("properties.temperatures")["default"]
    assert DEFAULT_DEBYE_FRACTIONS == schema_node("evaluate.debye_fractions")["default"]
    assert DUPLICATE_MAE == schema_node("evaluate.duplicate_mae")["default"]
    assert DEFAULT_MIN_DISTANCE == schema_node("featurize.min_distance")["default"]
    assert sorted(PRESETS) == sorted(schema_node("model.preset")["enum"])
    train_schema = schema_node("train")["properties"]
    for name, value in asdict(TrainConfig()).items():
        if "default" in train_schema[name]:
            assert value == train_schema[name]["default"], name
    validate_config({"model": asdict(ModelConfig()), "train": asdict(TrainConfig())})
    for name in PRESETS:
        resolve({"preset": name}, {})  # raises ConfigError if a preset breaks the schema


def test_fit_from_python_cannot_train_zero_epochs():
    """The schema's train rules hold for Python callers too: no untrained model.pt through fit()."""
    from pipeline.config import ConfigError
    from pipeline.nn.train import TrainConfig

    with pytest.raises(ConfigError, match="train.epochs"):
        TrainConfig(epochs=0)
    assert TrainConfig(epochs=1).epochs == 1
