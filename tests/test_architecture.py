"""The package's shape: role packages with a one-way dependency order, no import cycles, no Snakemake inside; and
the tests' shape: test modules share helpers through tests/helpers.py, never by importing each other.

The import graph is read from the source (every ``import`` statement, also the ones inside functions), so a cycle
hidden behind a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
TESTS = Path(__file__).resolve().parent
#: the modules under tests/ that test modules may import: shared helpers, the loopback server, pytest's fixtures
TEST_SUPPORT = {"tests.helpers", "tests.loopback", "tests.conftest"}

#: role packages in dependency order: a package may import the ones before it (and the core modules), never after
ORDER = ["data", "physics", "nn", "reports", "screening", "stages"]
#: top-level modules every role may import (settings, data contracts, DOS grid, file writing, process tweaks)
CORE = {"config", "schemas", "grid", "io", "runtime"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str) -> set[str]:
    """Every module of the ``pipeline`` package that ``path`` imports (absolute and relative, at any depth)."""
    known = modules()
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t in known and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    return {name: imports(path, name) for name, path in modules().items()}


def role(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ORDER) else "core"


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_module_import_graph_has_no_cycles():
    g = graph()
    # a package's __init__ is imported with any of its modules: it must not import them back
    assert find_cycle(g) is None, " -> ".join(find_cycle(g) or [])


def test_the_role_packages_depend_one_way():
    g = graph()
    rank = {r: i for i, r in enumerate(ORDER)}
    bad = []
    for name, targets in g.items():
        here = role(name)
        for t in targets:
            there = role(t)
            if there == "core" or there == here or name in ("pipeline.__main__", "pipeline.cli"):
                continue
            if here == "core":
                bad.append(f"{name} (core) imports {t} ({there})")
            elif rank[there] > rank[here]:
                bad.append(f"{name} ({here}) imports {t} ({there})")
    assert bad == []


def test_the_core_modules_import_only_each_other():
    g = graph()
    for name in (f"pipeline.{m}" for m in CORE):
        assert {role(t) for t in g[name]} <= {"core"}, (name, g[name])


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_imports_snakemake(name):
    tree = ast.parse(modules()[name].read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        assert not any(n == "snakemake" or n.startswith("snakemake.") for n in names), name


def test_the_checker_finds_a_planted_cycle_and_a_reverse_dependency():
    """The checks above can fail: a two-module cycle and a data -> nn import are caught."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert role("pipeline.data.dos") == "data" and role("pipeline.config") == "core"
    assert role("pipeline.stages") == "stages"


def test_every_stage_has_a_cli_module_under_stages():
    from pipeline import cli

    for stage, (module, _) in cli.STAGES.items():
        assert module == f"pipeline.stages.{stage}", stage


def imported_test_modules(path: Path) -> set[str]:
    """Every ``tests.*`` module that the test module ``path`` imports (at any depth, ``from tests import x`` too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to the tests package
                base = ".".join(["tests", *([base] if base else [])])
            names = [base]
            if base == "tests":  # from tests import test_model
                names += [f"tests.{a.name}" for a in node.names]
        out |= {n for n in names if n.startswith("tests.")}
    return out


def test_no_test_module_imports_another_test_module():
    """Shared helpers live in tests/helpers.py: a test module importing another one would run its tests' module
    code (and pull its fixtures) wherever it is imported."""
    bad = {
        path.name: sorted(imported_test_modules(path) - TEST_SUPPORT)
        for path in sorted(TESTS.glob("test_*.py"))
    }
    assert {name: mods for name, mods in bad.items() if mods} == {}


def test_the_test_import_check_finds_a_planted_import(tmp_path):
    planted = tmp_path / "test_planted.py"
    planted.write_text(
        "from tests.helpers import SMALL\nimport tests.test_model\nfrom tests import test_train\n"
        "from . import loopback\n\ndef f():\n    from tests.test_predict import save_model\n"
    )
    assert imported_test_modules(planted) - TEST_SUPPORT == {
        "tests.test_model",
        "tests.test_train",
        "tests.test_predict",
    }
