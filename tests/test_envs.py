"""The conda environments of the rules (`snakemake --sdm conda`, envs/*.yaml), checked without conda: real
dependencies with pyproject.toml's version ranges, no install of the package (Snakemake would resolve a relative
`-e ..` from its copy of the file under .snakemake/conda/), every rule's environment holding each package its stage
imports (statically, lazy imports included), no environment carrying what none of its rules needs; and the rules
importing the package from the repository via PYTHONPATH, wherever the workflow is run from."""

from __future__ import annotations

import ast
import functools
import os
import re
import subprocess
import sys
import venv
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(.*)$")


def _norm(name: str) -> str:
    name = re.sub(r"[-_.]+", "-", name).lower()
    return (
        "pymatgen" if name.startswith("pymatgen") else name
    )  # pymatgen-core etc. ship the pymatgen namespace


def pyproject_specs() -> dict[str, str]:
    deps = PYPROJECT["project"]["dependencies"] + [
        d for ds in PYPROJECT["project"]["optional-dependencies"].values() for d in ds
    ]
    out = {"python": PYPROJECT["project"]["requires-python"]}
    for dep in deps:
        name, spec = SPEC.match(dep).groups()
        out[_norm(name)] = spec.replace(" ", "")
    return out


def env_specs(path: Path) -> dict[str, str]:
    """name -> version spec of every conda and pip dependency of an environment file."""
    env = yaml.safe_load(path.read_text())
    out: dict[str, str] = {}
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            if item.startswith("-"):  # pip options (--extra-index-url); an editable install is refused below
                assert not item.startswith(("-e", "--editable")), f"{path.name} installs {item!r}"
                continue
            name, spec = SPEC.match(item).groups()
            out[_norm(name)] = spec.replace(" ", "")
    return out


def rule_envs_and_stages() -> dict[str, tuple[str, str]]:
    """rule -> (environment file name, stage it runs), read from rules/*.smk."""
    out = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        blocks = re.split(r"^\s*rule (\w+):\s*$", text, flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            env = re.search(r'conda:\s*\n\s*"\.\./envs/([\w.]+)"', body).group(1)
            shell = re.search(r"shell:\s*\n\s*(\S+)", body).group(1)
            if re.fullmatch(r"[A-Z_]+", shell):  # a shell command kept in a variable (SCREEN_SHELL)
                body += re.search(rf"^{shell} = \((.*?)^\)", text, flags=re.M | re.S).group(1)
            stage = re.search(r"python -m pipeline (\w+)|\{params\.py\} (\w+)", body)
            out[name] = (env, stage.group(1) or stage.group(2))
    return out


def _module_file(module: str) -> Path | None:
    rel = module.split(".")[1:]
    for path in (
        REPO.joinpath("pipeline", *rel).with_suffix(".py"),
        REPO.joinpath("pipeline", *rel, "__init__.py"),
    ):
        if path.exists():
            return path
    return None


@functools.cache
def _module_imports(module: str) -> frozenset[str]:
    """Names a pipeline module imports anywhere in its code (lazy imports too), and packages whose data files it
    reads (importlib.resources.files("package"))."""
    path = _module_file(module)
    if path is None:
        return frozenset()
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "pipeline":
                names |= {f"pipeline.{a.name}" for a in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "files"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return frozenset(names)


def stage_imports(stage_module: str) -> frozenset[str]:
    """Distributions imported (at any depth, lazily too) by a stage module and the pipeline modules it uses."""
    todo, seen, top = [stage_module], set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _module_imports(module):
            if name.split(".")[0] == "pipeline":
                todo.append(name)
            elif name.split(".")[0] not in sys.stdlib_module_names:
                top.add(name.split(".")[0])
    dists = _distributions()
    return frozenset(_norm(d) for t in top for d in dists.get(t, [t]))


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


ENVS = sorted(p.name for p in (REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("name", ENVS)
def test_environment_lists_real_dependencies_with_the_pyproject_ranges(name):
    specs, wanted = env_specs(REPO / "envs" / name), pyproject_specs()
    assert "phonon-pipeline" not in specs and ".." not in (REPO / "envs" / name).read_text().split("#")[0]
    for dep, spec in specs.items():
        if dep == "pip":
            continue
        assert dep in wanted, f"{name}: {dep} is not a dependency in pyproject.toml"
        assert spec == wanted[dep], f"{name}: {dep}{spec}, pyproject.toml says {dep}{wanted[dep]}"


def test_every_rule_environment_holds_what_its_stage_imports_and_no_more():
    rules = rule_envs_and_stages()
    assert {
        "fetch",
        "dos",
        "featurize_shard",
        "train",
        "predict_shard",
        "properties",
        "evaluate",
        "report",
    } <= set(rules)
    from pipeline.cli import STAGES

    needed: dict[str, set[str]] = {}
    for rule, (env, stage) in rules.items():
        assert (REPO / "envs" / env).exists(), f"rule {rule}: envs/{env} does not exist"
        imports = stage_imports(STAGES[stage][0])
        missing = imports - set(env_specs(REPO / "envs" / env))
        assert not missing, f"rule {rule} ({stage}) imports {sorted(missing)}, which envs/{env} lacks"
        needed.setdefault(env, set()).update(imports)
    assert set(needed) == set(ENVS), f"environment files no rule uses: {set(ENVS) - set(needed)}"
    for env, imports in needed.items():
        extra = set(env_specs(REPO / "envs" / env)) - imports - {"python", "pip"}
        assert not extra, f"envs/{env} carries {sorted(extra)}, which none of its rules imports"
    # one environment per rule family only where they differ
    contents = {env: frozenset(env_specs(REPO / "envs" / env).items()) for env in ENVS}
    assert len(set(contents.values())) == len(contents), "two environment files are identical"


def test_jobs_import_the_package_from_the_repository_wherever_the_workflow_runs(tmp_path):
    """A job whose Python lacks the package (as in a conda environment) still runs `python -m pipeline`, from a
    working directory and a Snakefile outside the repository, because rules/common.smk puts the repository on
    PYTHONPATH."""
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)  # no site-packages of ours: no pipeline, no snakemake
    python = bare / "bin" / "python"
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    alone = subprocess.run(
        [python, "-m", "pipeline", "--help"], cwd=work, capture_output=True, text=True, env=env
    )
    assert (
        alone.returncode != 0 and "No module named pipeline" in alone.stderr
    )  # the control: it needs the path
    (work / "Snakefile").write_text(
        f'config.update({{"source": "local", "local_path": "."}})\n'
        f'include: "{REPO}/rules/common.smk"\n\n'
        f"rule probe:\n"
        f'    output: "probe.txt"\n'
        f'    shell: "{python} -m pipeline --help > {{output}}"\n'
    )
    r = subprocess.run(
        [SNAKEMAKE, "--cores", "1", "probe.txt"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "stages:" in (work / "probe.txt").read_text()
