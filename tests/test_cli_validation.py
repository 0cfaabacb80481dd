"""One config path, checked at the door.

Every stage reads its settings one way: the schema (pipeline/config.schema.yaml) -> the validated sections a rule
hands over (``--settings`` JSON, or ``--config`` / ``--set`` by hand) -> one frozen dataclass
(:class:`pipeline.config.ConfigNode`). These tests check that every schema key reaches a dataclass field, that
dataclasses hold no defaults of their own, that the stage parsers keep only paths and operational flags, that a bad
value exits 2 naming the key before the stage does any work, and that adding a key takes the schema, one dataclass
and its use.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import re
import shutil
import subprocess
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import cli, config
from pipeline.config import RULES, ConfigError, ConfigNode, schema_node, settings_json, validate_config
from pipeline.grid import N_BINS
from pipeline.schemas import MATERIALS
from tests.helpers import graph_of

REPO = Path(__file__).resolve().parents[1]

#: schema keys no stage reads: the workflow's own paths (rules/common.smk)
WORKFLOW_ONLY = {"results_dir", "data_dir"}
#: stage options that share a name with a config key they read, and why they are operational, not settings
OPERATIONAL = {
    ("train", "--threads"): "the Snakemake job's threads (train.threads 0 means: use them)",
    ("baselines", "--threads"): "the Snakemake job's threads",
    ("screen", "--model"): "the model file, an input path (the rule resolves screen.model into it)",
    ("crossval", "--model"): "the model file, an input path (the rule resolves crossval.model into it)",
    ("predict", "--model"): "the model file, an input path (the rule resolves predict.model into it)",
}
#: for every rule of pipeline.config.RULES: values (the others at their defaults) that break it
RULE_VIOLATIONS = {
    "split.fractions": {"split.fractions": [0.5, 0.2, 0.2]},
    "featurize.min_distance": {"featurize.min_distance": 9.0},
    "evaluate.split": {"evaluate.split": "val"},
}


# ----------------------------------------------------------------------------------------- helpers ----------
def stage_settings() -> dict[str, type[ConfigNode]]:
    """stage -> its root settings class (``pipeline.stages.<stage>.Settings``)."""
    return {stage: importlib.import_module(module).Settings for stage, (module, _) in cli.STAGES.items()}


def nodes(root: type[ConfigNode]) -> list[type[ConfigNode]]:
    """``root`` and every section class below it."""
    out = [root]
    for hint in typing.get_type_hints(root).values():
        if isinstance(hint, type) and issubclass(hint, ConfigNode):
            out += nodes(hint)
    return out


def field_keys(root: type[ConfigNode]) -> set[str]:
    """The dotted config keys the fields of ``root`` (recursively) hold."""
    keys = set()
    for node in nodes(root):
        hints = typing.get_type_hints(node)
        for f in dataclasses.fields(node):
            if not (isinstance(hints[f.name], type) and issubclass(hints[f.name], ConfigNode)):
                keys.add(f"{node.KEY}.{f.name}" if node.KEY else f.name)
    return keys


def schema_leaf_keys(node: dict[str, Any] | None = None, prefix: str = "") -> set[str]:
    node = config.schema() if node is None else node
    keys = set()
    for name, sub in node.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        keys |= schema_leaf_keys(sub, key) if "properties" in sub else {key}
    return keys


def stage_parsers() -> list[tuple[str, list[str], argparse.ArgumentParser]]:
    """(stage, argv prefix, parser) for every stage parser and sub-command parser."""
    out = []
    for stage, (module, _) in cli.STAGES.items():
        top = importlib.import_module(module).build_parser()
        out.append((stage, [], top))
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [(stage, [name], sub) for name, sub in action.choices.items()]
    return out


def settings_parsers() -> list[tuple[str, list[str], argparse.ArgumentParser]]:
    """The parsers that take --settings (the ones that read config keys)."""
    return [(s, pre, p) for s, pre, p in stage_parsers() if "--settings" in p._option_string_actions]


def required_argv(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the required options and positionals (parsing never opens files)."""
    argv = []
    for a in parser._actions:
        if a.option_strings and a.required:
            argv.append(a.option_strings[0])
            if a.nargs != 0:
                argv.append(a.choices[0] if a.choices else "x")
    for g in parser._mutually_exclusive_groups:
        if g.required:
            a = g._group_actions[0]
            argv += [a.option_strings[0]] + ([] if a.nargs == 0 else ["x"])
    for a in parser._actions:
        if (
            not a.option_strings
            and not isinstance(a, argparse._SubParsersAction)
            and a.nargs not in ("?", "*")
        ):
            argv.append("x")
    return argv


def main_of(stage: str):
    return importlib.import_module(cli.STAGES[stage][0]).main


def scalar_violations(node: dict[str, Any]) -> list[Any]:
    """Values (as JSON carries them) that break a scalar schema node."""
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
    if "boolean" in types:
        bad.append("maybe")
    if "enum" in node:
        bad.append("not-a-choice")
    if "const" in node:
        bad.append(node["const"] + 1)
    if "pattern" in node:
        bad.append("no such id!")
    if node.get("minLength"):
        bad.append("")
    return bad


def violations(key: str) -> list[Any]:
    node = schema_node(key)
    if node.get("type") != "array":
        return scalar_violations(node)
    default = list(node.get("default") or [])
    out = [[v, *default[1:]] for v in scalar_violations(node["items"])] if default else []
    if node.get("minItems"):
        out.append([])
    return out


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
    from pipeline.data.shards import write_shard

    rng = np.random.default_rng(1)
    graphs = [
        graph_of(np.eye(3) * a, [[0, 0, 0], [0.5, 0.5, 0.5]], ["Na", "Cl"]) for a in (5.5, 5.6, 5.7, 5.8)
    ]
    write_shard(path, [f"NaCl-{i}" for i in range(n)], graphs[:n], rng.random((n, N_BINS)).astype(np.float32))
    return path


def exit_code_and_error(main, argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


# ------------------------------------------------------------------ schema <-> dataclasses, one to one -------
def test_every_schema_key_reaches_a_dataclass_field_and_every_field_is_a_schema_key():
    held = set().union(*(field_keys(root) for root in stage_settings().values()))
    assert schema_leaf_keys() - held == WORKFLOW_ONLY, "schema keys no stage dataclass holds"
    for key in held:
        schema_node(key)  # KeyError: a field without a schema key


def test_settings_dataclasses_are_frozen_and_hold_no_defaults_of_their_own():
    for stage, root in stage_settings().items():
        assert root.KEY == "", stage
        for node in nodes(root):
            assert node.__dataclass_params__.frozen, node
            for f in dataclasses.fields(node):
                no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                assert no_default, f"{node.__name__}.{f.name}: the default belongs in the schema"


def test_a_section_is_one_class_wherever_it_is_read():
    by_key: dict[str, set[type]] = {}
    for root in stage_settings().values():
        for node in nodes(root)[1:]:
            by_key.setdefault(node.KEY, set()).add(node)
    assert {k: v for k, v in by_key.items() if len(v) > 1} == {}


def test_the_schema_default_round_trips_through_every_stage_dataclass():
    cfg = validate_config({})
    for stage, root in stage_settings().items():
        wanted = [f.name for f in dataclasses.fields(root)]
        settings = root.from_json(settings_json(cfg, *wanted))
        assert settings == root.from_config({}), stage  # the workflow's defaults are the stage's defaults
        assert root.from_config(settings.to_config()) == settings, stage
        flat = settings.flat()
        for key, value in flat.items():
            default = schema_node(key).get("default")
            expected = tuple(default) if isinstance(default, list) else default
            if "default" in schema_node(key) and not isinstance(default, dict):
                assert value == expected, (stage, key, value, default)


def test_adding_a_config_key_takes_the_schema_one_dataclass_and_its_use(monkeypatch):
    """The demonstration the issue asks for: a new key ``featurize.max_neighbours_shell`` declared in the schema
    and as a field of the section's dataclass reaches the stage through the rule's --settings with no other edit;
    without the field, the one-to-one check above fails."""
    from pipeline.data.featurize import FeaturizeSettings
    from pipeline.stages import common

    schema = config.schema()
    schema["properties"]["featurize"]["properties"]["max_neighbours_shell"] = {
        "type": "integer",
        "minimum": 0,
        "default": 2,
        "description": "an example key",
    }
    monkeypatch.setattr(config, "_schema", lambda: schema)

    # (make_dataclass: real types in the annotations, as a module-level class has them)
    extended = dataclasses.make_dataclass(
        "Extended", [("max_neighbours_shell", int)], bases=(FeaturizeSettings,), frozen=True
    )
    Stage = dataclasses.make_dataclass("Stage", [("featurize", extended)], bases=(ConfigNode,), frozen=True)

    cfg = validate_config({"featurize": {"max_neighbours_shell": 5}})  # 1. the workflow's config (schema)
    settings = Stage.from_json(settings_json(cfg, "featurize")).featurize  # 2. what the rule hands over
    assert settings.max_neighbours_shell == 5 and settings.k == schema_node("featurize.k")["default"]
    assert Stage.from_config({}).featurize.max_neighbours_shell == 2  # the default: from the schema alone
    with pytest.raises(ConfigError, match="featurize.max_neighbours_shell"):
        Stage.from_config({"featurize": {"max_neighbours_shell": -1}})
    p = argparse.ArgumentParser()
    common.add_settings_options(p, Stage)
    ns = p.parse_args(["--set", "featurize.max_neighbours_shell=7"])
    assert (
        common.parse_settings(p, ns, Stage).featurize.max_neighbours_shell == 7
    )  # 3. by hand, no new option
    # 4. declared in the schema but in no dataclass: the one-to-one check names it
    assert "featurize.max_neighbours_shell" in schema_leaf_keys() - field_keys(stage_settings()["featurize"])


# --------------------------------------------------------------------- parsers: paths and operational flags ---
def test_stage_parsers_keep_only_paths_and_operational_flags():
    roots = stage_settings()
    for stage, _, parser in stage_parsers():
        names = {f.rsplit(".", 1)[-1] for f in field_keys(roots[stage])}
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag[2:].replace("-", "_") in names:
                    assert (stage, flag) in OPERATIONAL, f"{stage} {flag} duplicates a config key: use --set"


def test_every_stage_that_reads_config_keys_takes_the_settings_options():
    with_settings = {stage for stage, _, _ in settings_parsers()}
    for stage, root in stage_settings().items():
        if dataclasses.fields(root):
            assert stage in with_settings, stage


def _cases() -> list[tuple[str, list[str], str]]:
    out = []
    for stage, prefix, _parser in settings_parsers():
        for key in sorted(field_keys(stage_settings()[stage])):
            if violations(key):
                out.append((stage, prefix, key))
    return out


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c[0]}{''.join(' ' + p for p in c[1])} {c[2]}")
def test_a_bad_value_exits_2_naming_the_key(case, capsys):
    stage, prefix, key = case
    top = importlib.import_module(cli.STAGES[stage][0]).build_parser()
    parser = dict((tuple(pre), p) for s, pre, p in stage_parsers() if s == stage)[tuple(prefix)]
    argv = [*prefix, *required_argv(parser)]
    section, _, name = key.rpartition(".")
    for bad in violations(key):
        settings = {section: {name: bad}} if section else {name: bad}
        with pytest.raises(SystemExit) as exc:
            args = top.parse_args([*argv, "--settings", json.dumps(settings)])
            importlib.import_module("pipeline.stages.common").parse_settings(
                parser, args, stage_settings()[stage]
            )
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"'{key}" in err, (stage, key, bad, err)  # 'key' or 'key[i]'...


def test_the_three_settings_sources_in_order(tmp_path):
    from pipeline.stages import common
    from pipeline.stages.featurize import Settings

    p = argparse.ArgumentParser()
    common.add_settings_options(p, Settings)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "featurize: {k: 6, cutoff: 7.0}\ntrain: {epochs: 3}\n"
    )  # train: not read by featurize, ignored
    got = common.parse_settings(
        p,
        p.parse_args(
            ["--config", str(cfg), "--settings", '{"featurize": {"k": 8}}', "--set", "featurize.k=9"]
        ),
        Settings,
    ).featurize
    assert (got.k, got.cutoff, got.min_distance) == (9, 7.0, schema_node("featurize.min_distance")["default"])
    with pytest.raises(SystemExit):
        common.parse_settings(p, p.parse_args(["--set", "train.epochs=3"]), Settings)  # not read here
    with pytest.raises(SystemExit):
        common.parse_settings(p, p.parse_args(["--set", "featurize.nope=3"]), Settings)


# ------------------------------------------------------------------------------------- the cases ----
def test_featurize_bad_k_exits_naming_the_key_before_reading_input(tmp_path, capsys):
    main = main_of("featurize")
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
    code, err = exit_code_and_error(main, [*argv, "--set", "featurize.k=-3"], capsys)
    readme = (REPO / "README.md").read_text().replace("\n", " ")
    example = re.search(r"`(error: config error at 'featurize\.k': [^`]+)`", readme).group(
        1
    )  # README's promise
    assert code == 2 and example in err
    assert not (tmp_path / "bad").exists()
    # the same command with a valid k featurises every material: the input was fine, only k was not
    good = ["--out", str(tmp_path / "s.h5"), "--rejects", str(tmp_path / "r.parquet")]
    settings = ["--set", "featurize.k=4", "--set", "featurize.n_shards=1"]
    assert main([*argv[:4], *good, "--no-progress", *settings]) == 0
    assert json.loads(capsys.readouterr().out)["n_graphs"] == 4


def test_settings_objects_refuse_bad_values_from_python_too():
    from pipeline.data.featurize import FeaturizeSettings
    from pipeline.stages.featurize import Settings

    with pytest.raises(ConfigError, match="featurize"):
        Settings.from_config({"featurize": 5})  # a section that is not a mapping

    with pytest.raises(ConfigError, match="featurize.k"):
        FeaturizeSettings.from_config({"k": -3})
    with pytest.raises(ConfigError, match="featurize.min_distance"):
        FeaturizeSettings.from_config({"min_distance": 8.0})  # >= cutoff: a rule, not a bound
    with pytest.raises(ConfigError, match="featurize.nope"):
        FeaturizeSettings.from_config({"nope": 1})


def test_train_epochs_zero_exits_naming_epochs_and_writes_no_model(tmp_path, capsys):
    main = main_of("train")
    shard = labelled_shard(tmp_path / "train.h5")
    argv = ["--train-shards", str(shard), "--val-shards", str(shard), "--device", "cpu", "--no-progress"]
    model = {"preset": "demo", "hidden_features": 8, "embedding_features": 8}
    bad = tmp_path / "bad"
    settings = json.dumps({"model": model, "train": {"epochs": 0}})
    code, err = exit_code_and_error(main, [*argv, "--out-dir", str(bad), "--settings", settings], capsys)
    assert code == 2 and "config error at 'train.epochs': 0 is less than the minimum of 1" in err
    assert not bad.exists()
    good = tmp_path / "good"
    settings = json.dumps({"model": model, "train": {"epochs": 1, "batch_size": 2}})
    assert main([*argv, "--out-dir", str(good), "--settings", settings]) == 0
    assert (good / "model.pt").exists()


def test_a_preset_cannot_sneak_in_nonsense(tmp_path, capsys, monkeypatch):
    from pipeline.nn import presets

    main = main_of("train")
    monkeypatch.setitem(presets.PRESETS["demo"]["train"], "epochs", 0)
    shard = labelled_shard(tmp_path / "train.h5")
    argv = ["--train-shards", str(shard), "--val-shards", str(shard), "--out-dir", str(tmp_path / "out")]
    code, err = exit_code_and_error(main, [*argv, "--set", "model.preset=demo"], capsys)
    assert code == 2 and "'train.epochs'" in err and "minimum of 1" in err
    assert not (tmp_path / "out").exists()
    # an explicit override of the bad preset value is fine (and checked the same way)
    from pipeline.stages.train import Settings

    assert Settings.from_config({"model": {"preset": "demo"}, "train": {"epochs": 2}}).train.epochs == 2


def test_a_config_file_is_validated_at_the_door(tmp_path, capsys):
    main = main_of("train")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {lr: -1}\n")
    argv = ["--train-shards", "a.h5", "--val-shards", "b.h5", "--out-dir", str(tmp_path / "out")]
    code, err = exit_code_and_error(main, [*argv, "--config", str(cfg)], capsys)
    assert code == 2 and "'train.lr'" in err
    code, err = exit_code_and_error(main, [*argv, "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "argument --config: cannot read" in err


def test_split_fractions_must_sum_to_one_in_the_workflow_config_and_the_dos_stage(tmp_path, capsys):
    with pytest.raises(
        ConfigError, match=r"config error at 'split.fractions': \[0.5, 0.2, 0.2\] must sum to 1"
    ):
        validate_config({"split": {"method": "random", "fractions": [0.5, 0.2, 0.2]}})
    argv = ["--fetch-dir", str(tmp_path / "fetch"), "--out-dir", str(tmp_path / "dos")]
    bad = json.dumps({"split": {"method": "random", "fractions": [0.5, 0.2, 0.2]}})
    code, err = exit_code_and_error(main_of("dos"), [*argv, "--settings", bad], capsys)
    assert code == 2 and "'split.fractions': [0.5, 0.2, 0.2] must sum to 1" in err
    assert not (tmp_path / "dos").exists()
    assert validate_config({"split": {"fractions": [0.7, 0.2, 0.1]}})["split"]["fractions"] == [0.7, 0.2, 0.1]


def test_every_rule_is_enforced_by_the_workflow_and_every_stage_that_reads_its_keys():
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
        for stage, root in stage_settings().items():
            if set(rule.keys) <= field_keys(root):
                with pytest.raises(ConfigError) as exc:
                    root.from_config(cfg)
                assert exc.value.key == rule.keys[0], stage


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


# -------------------------------------------------------------------- rules hand over sections, not keys -----
def test_rules_pass_settings_not_single_config_keys():
    """Each stage's settings reach it as one --settings parameter; the rules read config keys only to decide the
    workflow (which inputs, how many jobs), never to pass a value as a flag."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    shells = re.findall(r'shell:\s*((?:\s*"[^"\n]*"\s*)+)', text)
    assert shells
    for shell in shells:
        if "{params.py}" not in shell:
            continue
        joined = "".join(re.findall(r'"([^"]*)"', shell))
        stage, *rest = joined.split("{params.py}", 1)[1].split()
        sub = [rest[0]] if rest and not rest[0].startswith("-") else []
        parser = {(s, tuple(pre)): p for s, pre, p in stage_parsers()}.get((stage, tuple(sub)))
        if parser is not None and "--settings" in parser._option_string_actions:
            assert "--settings {params.settings}" in joined, joined
    for flag in re.findall(r"--([a-z][a-z-]*) \{params\.(\w+)\}", text):
        assert flag[1] not in {f.rsplit(".", 1)[-1] for f in schema_leaf_keys()}, flag


def test_rules_build_settings_with_the_one_helper_and_define_no_functions():
    """Every rule's --settings comes from pipeline.config.settings_arg; rule files hold no functions of their own
    (snakemake --lint: functions belong in a module)."""
    for path in sorted((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        assert not re.search(r"^def ", text, re.M), path.name
        for value in re.findall(r"^\s+settings=(.+)$", text, re.M):
            assert value.startswith(
                ("settings_arg(", "MEMBER_SETTINGS", "SCREEN_SETTINGS", "CROSSVAL_SETTINGS")
            ), (
                path.name,
                value,
            )
    for name in ("MEMBER_SETTINGS", "SCREEN_SETTINGS", "CROSSVAL_SETTINGS"):
        assert re.search(
            rf"^{name} = settings_arg\(",
            "\n".join(p.read_text() for p in (REPO / "rules").glob("*.smk")),
            re.M,
        )


def test_settings_json_only_and_without_pick_the_keys_a_job_uses():
    cfg = validate_config({})
    only = json.loads(settings_json(cfg, only={"predict": ["batch_size"]}))
    assert only == {"predict": {"batch_size": cfg["predict"]["batch_size"]}}
    member = json.loads(settings_json(cfg, "model", "train", without={"train": ["ensemble"]}))
    assert "ensemble" not in member["train"] and member["model"] == cfg["model"]
    assert set(member["train"]) == set(cfg["train"]) - {"ensemble"}
