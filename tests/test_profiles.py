"""The execution profiles as Snakemake reads them (dry runs, no scheduler needed; the real SLURM proof is the
opt-in tests/test_slurm.py): account/partition from the environment, the GPU request of the training rules,
attempt-scaled retries, and shard jobs packed into group jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
JOB_HEADER = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
GROUP_HEADER = re.compile(r"Group job (\w+) \(jobs in lexicogr\. order\):")


def _dry_run(tmp_path: Path, profile: str, env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SBATCH_", "PHONON_GPU"))} | env_extra
    r = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "--profile",
            profile,
            "--configfile",
            "config/demo.yaml",
            "--config",
            f"results_dir={tmp_path}/results",
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    return out


def _resources_by_rule(out: str) -> dict[str, dict[str, str]]:
    """rule -> its planned resources (first job of each rule)."""
    found: dict[str, dict[str, str]] = {}
    rule = None
    for line in out.splitlines():
        if m := JOB_HEADER.match(line):
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:") and rule not in found:
            items = line.split("resources:", 1)[1].split(", ")
            found[rule] = dict(item.strip().split("=", 1) for item in items if "=" in item)
    return found


@pytest.fixture(scope="module")
def slurm_plan(tmp_path_factory) -> str:
    env = {"SBATCH_ACCOUNT": "acct_from_env", "SBATCH_PARTITION": "cpuq", "PHONON_GPU_PARTITION": "gpuq"}
    return _dry_run(tmp_path_factory.mktemp("slurm_plan"), "profiles/slurm", env)


def test_slurm_account_and_partitions_come_from_the_environment(slurm_plan):
    resources = _resources_by_rule(slurm_plan)
    assert {r["slurm_account"] for r in resources.values()} == {"acct_from_env"}
    for rule, r in resources.items():
        expected = "gpuq" if rule in ("train", "direct_baselines") else "cpuq"
        assert r["slurm_partition"] == expected, (rule, r)


def test_slurm_without_environment_leaves_account_and_partition_to_the_plugin(tmp_path):
    resources = _resources_by_rule(_dry_run(tmp_path, "profiles/slurm", {}))
    assert resources and all(
        r["slurm_account"] == "" and r["slurm_partition"] == "" for r in resources.values()
    )


def test_slurm_training_rules_ask_for_one_gpu_and_others_for_none(slurm_plan):
    resources = _resources_by_rule(slurm_plan)
    for rule in ("train", "direct_baselines"):
        assert resources[rule]["gres"] == "gpu:1", resources[rule]
        assert resources[rule].get("gpu", "0") == "0"  # a second request through --gpus would double it
        assert int(resources[rule]["mem_mb"]) == 16000 and int(resources[rule]["runtime"]) >= 480
    for rule in set(resources) - {"train", "direct_baselines"}:
        assert "gres" not in resources[rule] and resources[rule].get("gpu", "0") == "0", (
            rule,
            resources[rule],
        )
        assert resources[rule]["runtime"] == "60", (rule, resources[rule])


def test_slurm_packs_shard_jobs_into_group_jobs(slurm_plan):
    assert sorted(GROUP_HEADER.findall(slurm_plan)) == ["featurize", "predict"]


def test_local_profile_plans_the_demo_without_groups(tmp_path):
    out = _dry_run(tmp_path, "profiles/local", {})
    assert not GROUP_HEADER.search(out)
    assert {"train", "featurize_shard", "predict_shard", "report"} <= set(_resources_by_rule(out))
