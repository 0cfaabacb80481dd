"""Rerunning one stage: changing a stage's parameter reruns that stage and its dependants only; an unchanged rerun
does nothing. Checked on the real Snakefile with `snakemake -n` (the plan, not a run).

A complete demo result tree is faked once per module in a temp workspace: every output is created empty and
`snakemake --touch --forceall` records Snakemake's provenance (params, input, code) for each job as a finished run
would. Each test then dry-runs against a copy of config/demo.yaml with one value changed and compares the planned
rules (and which of them are planned because their params changed) with the DAG's stage -> dependants contract.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):\s*$")

DOWNSTREAM_OF_PREDICT = {
    "predict_shard",
    "predict_gather",
    "properties",
    "direct_baselines",
    "evaluate",
    "report",
}
# The demo predicts (and screens its pool) with the shipped model (predict.model: shipped), so its trained model feeds
# the report's learning curves only
assert DEMO["predict"]["model"] == "shipped"
DOWNSTREAM_OF_TRAIN = {"train", "ensemble", "report"}
DOWNSTREAM_OF_FEATURIZE = (
    {"featurize_shard", "featurize_gather"} | DOWNSTREAM_OF_TRAIN | DOWNSTREAM_OF_PREDICT
)


def _snakemake(workspace: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--cores", "1", "--configfile", str(configfile), *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _write_config(path: Path, section: str | None = None, key: str | None = None, value=None) -> Path:
    config = copy.deepcopy(DEMO)
    if section is not None:
        config.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A temp working directory whose demo results are complete and up to date as far as Snakemake knows."""
    ws = tmp_path_factory.mktemp("reruns")
    for name in ("data", "config.yaml"):  # read at DAG-build time, relative to the working directory
        (ws / name).symlink_to(REPO / name)
    demo = _write_config(ws / "demo.yaml")
    summary = _snakemake(ws, demo, "--summary")
    assert summary.returncode == 0, summary.stderr
    outputs = [line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if line.strip()]
    assert len(outputs) > 20, summary.stdout
    for out in outputs:
        path = ws / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    touched = _snakemake(ws, demo, "--touch", "--forceall")
    assert touched.returncode == 0, touched.stderr[-3000:]
    return ws


def _planned(workspace: Path, configfile: Path) -> tuple[set[str], set[str], str]:
    """(rules planned by a dry run, rules planned because their params changed, raw output)."""
    r = _snakemake(workspace, configfile, "-n")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    planned: set[str] = set()
    params_changed: set[str] = set()
    rule = None
    for line in out.splitlines():
        if m := JOB_HEADER.match(line):
            rule = m.group(1)
            planned.add(rule)
        elif rule and line.strip().startswith("reason:") and "Params have changed" in line:
            params_changed.add(rule)
    planned.discard("all")
    return planned, params_changed, out


def test_unchanged_rerun_does_nothing(workspace):
    planned, _, out = _planned(workspace, workspace / "demo.yaml")
    assert planned == set(), out[-3000:]
    assert "Nothing to be done" in out


@pytest.mark.parametrize(
    ("section", "key", "value", "changed_stage", "reruns"),
    [
        pytest.param(
            "properties",
            "temperatures",
            [100, 300, 600],
            {"properties", "screen_pool", "screen_user"},  # screen computes properties on the same grid
            {"properties", "direct_baselines", "evaluate", "report", "screen_pool", "screen_user"},
            id="properties.temperatures",
        ),
        pytest.param(
            "split",
            "seed",
            DEMO["split"]["seed"] + 1,
            {"dos"},
            {"dos", "screen_pool"} | DOWNSTREAM_OF_FEATURIZE,  # screen_pool: the pool of dos
            id="split.seed",
        ),
        pytest.param(
            "featurize",
            "cutoff",
            DEMO["featurize"]["cutoff"] - 1.0,
            {"featurize_shard"},
            DOWNSTREAM_OF_FEATURIZE,
            id="featurize.cutoff",
        ),
        pytest.param(
            "train",
            "seed",
            DEMO["train"]["seed"] + 1,
            # direct_baselines gets the train section too (and its result goes to evaluate and the report)
            {"train", "direct_baselines"},
            DOWNSTREAM_OF_TRAIN | {"direct_baselines", "evaluate"},
            id="train.seed",
        ),
        pytest.param(
            "predict", "batch_size", 7, {"predict_shard"}, DOWNSTREAM_OF_PREDICT, id="predict.batch_size"
        ),
        pytest.param(
            "evaluate",
            "duplicate_mae",
            0.05,
            {"evaluate"},
            {"evaluate", "report"},
            id="evaluate.duplicate_mae",
        ),
    ],
)
def test_changing_one_stage_parameter_reruns_that_stage_and_its_dependants_only(
    workspace, tmp_path, section, key, value, changed_stage, reruns
):
    assert DEMO.get(section, {}).get(key) != value
    planned, params_changed, out = _planned(
        workspace, _write_config(tmp_path / "changed.yaml", section, key, value)
    )
    assert params_changed == changed_stage, out[-4000:]
    assert planned == reruns, f"unexpected: {planned - reruns}, missing: {reruns - planned}\n{out[-4000:]}"
    assert "fetch" not in planned  # upstream of every stage here: never redone by a downstream parameter


def test_adding_an_ensemble_member_trains_only_the_new_member(workspace, tmp_path):
    assert DEMO["train"].get("ensemble", 1) == 1
    planned, params_changed, out = _planned(
        workspace, _write_config(tmp_path / "two.yaml", "train", "ensemble", 2)
    )
    assert planned == DOWNSTREAM_OF_TRAIN, out[-4000:]
    assert params_changed == set(), out[-4000:]  # member 0's settings did not change
    train_jobs = [line for line in out.splitlines() if JOB_HEADER.match(line) and "train" in line]
    assert len(train_jobs) == 1, out[-4000:]
    assert "member-1/model.pt" in out and "member-0/model.pt" not in out.split("rule ensemble")[0], out[
        -4000:
    ]
