"""`python -m pipeline STAGE --help` tells the truth: every option says what it is and shows its default, and the
concrete examples the help text gives are command lines the stage accepts."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex

import pytest

from pipeline import cli
from pipeline.stages import common, featurize

PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # PATH, DIR, MODEL.pt stays concrete


def parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of every stage, sub-command and the featurize gather step."""
    out = [("featurize gather", featurize.gather_parser())]
    for stage, (module, _) in cli.STAGES.items():
        top = importlib.import_module(module).build_parser()
        out.append((stage, top))
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [(f"{stage} {name}", sub) for name, sub in action.choices.items()]
    return out


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]


@pytest.mark.parametrize(("name", "parser"), parsers(), ids=[n for n, _ in parsers()])
def test_every_option_has_help_and_shows_its_default(name, parser):
    formatter = parser._get_formatter()
    for action in options(parser):
        flag = max(action.option_strings, key=len)
        assert (action.help or "").strip(), f"{name} {flag} has no help text"
        shown = formatter._get_help_string(action) % {"default": action.default, "prog": parser.prog}
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and not action.required
            and action.nargs != 0
        ):
            assert "default" in shown, f"{name} {flag}: default {action.default!r} not shown: {shown!r}"
    text = parser.format_help()  # renders without a formatting error (a stray % in a help string would raise)
    assert "usage:" in text


def examples() -> list[tuple[str, list[str]]]:
    """The concrete command lines (no PLACEHOLDER words) in the stages' --help texts, continuation lines joined,
    optional parts ([...]) kept."""
    found = []
    for stage, (module, _) in cli.STAGES.items():
        text = re.sub(r"\\\s*\n\s*", " ", importlib.import_module(module).build_parser().format_help())
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith(f"python -m pipeline {stage}"):
                continue
            words = [w for w in shlex.split(line.replace("[", " ").replace("]", " ")) if w != "..."]
            if any(PLACEHOLDER.match(w) for w in words):
                continue
            found.append((stage, words[4:]))
    return found


def test_the_help_examples_are_accepted():
    found = examples()
    assert {stage for stage, _ in found} >= {"predict", "featurize", "report"}, found
    for stage, argv in found:
        if stage == "featurize" and argv[:1] == ["gather"]:
            parser, argv = featurize.gather_parser(), argv[1:]
        else:
            parser = importlib.import_module(cli.STAGES[stage][0]).build_parser()
        try:
            ns = parser.parse_args(argv)
            if hasattr(ns, "set_values"):  # the settings the example gives are valid too
                common.parse_settings(parser, ns, importlib.import_module(cli.STAGES[stage][0]).Settings)
        except SystemExit as exc:  # argparse printed why
            pytest.fail(f"the {stage} --help example {' '.join(argv)!r} is refused (exit {exc.code})")


@pytest.mark.parametrize("stage", sorted(cli.STAGES))
def test_help_lists_every_config_key_the_stage_reads_with_its_schema_default(stage):
    import dataclasses
    import json

    from pipeline.config import schema_node

    module = importlib.import_module(cli.STAGES[stage][0])
    text = "\n".join(parser.format_help() for name, parser in parsers() if name.split()[0] == stage)
    settings = module.Settings
    keys = settings.config_keys()
    assert keys or not dataclasses.fields(settings)
    for key in keys:
        node = schema_node(key)
        shown = json.dumps(node["default"]) if "default" in node else "from model.preset"
        assert f"{key} [{shown}]" in text, (stage, key)
