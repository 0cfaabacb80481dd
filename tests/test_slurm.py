"""`snakemake --profile profiles/slurm` on a real SLURM scheduler (opt-in: `pytest -m slurm tests/test_slurm.py`).

A one-node cluster on localhost (Debian's slurm-wlm + munge + slurmdbd/MariaDB, tests/slurm/cluster.sh) is
installed if missing, started for this module and stopped afterwards. The demo workflow then runs through the
SLURM executor plugin with the profile exactly as committed; `sacct` (slurmdbd accounting) must show every
submitted job COMPLETED, charged to the account taken from SBATCH_ACCOUNT, and the train job holding one GPU GRES.
The test node's "GPU" is a count-only GRES without a device, so this proves the request and the allocation, not
CUDA. Needs root (apt-get, daemons); about 3-6 min on 2 cores, see profiles/README.md.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
ACCOUNT = "phonon_demo"
BIN = Path(sys.executable).parent
# Poll SLURM every few seconds instead of the plugin's cluster-friendly 40 s start delay: test time only.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "3", "--seconds-between-status-checks", "3"]
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+)")


def _sh(*cmd: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_env() -> dict:
    """Environment of a running one-node test cluster (installed if needed), torn down after the module."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (apt-get install, daemons)")
    # not under pytest's private (0700) tmp folders: munged and mariadbd run as their own users
    state = Path(tempfile.mkdtemp(prefix="phonon-slurm-"))
    env = {**os.environ, "SLURM_TEST_DIR": str(state), "SLURM_TEST_ACCOUNT": ACCOUNT}
    t0 = time.monotonic()
    r = _sh("bash", str(CLUSTER), "install", env=env, timeout=900)
    assert r.returncode == 0, f"install failed:\n{r.stdout}\n{r.stderr}"
    t_install = time.monotonic() - t0
    r = _sh("bash", str(CLUSTER), "start", env=env, timeout=300)
    if r.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((state / "log").glob("*.log")))
        _sh("bash", str(CLUSTER), "stop", env=env)
        pytest.fail(f"cluster start failed:\n{r.stderr}\n{logs}")
    print(f"\nSLURM test cluster: install {t_install:.0f} s, start {time.monotonic() - t0 - t_install:.0f} s")
    env.update(
        SLURM_CONF=str(state / "etc" / "slurm.conf"),
        SBATCH_ACCOUNT=ACCOUNT,
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
    )
    env.pop("SBATCH_PARTITION", None)
    env.pop("PHONON_GPU_PARTITION", None)
    try:
        yield env
    finally:
        _sh("bash", str(CLUSTER), "stop", env=env, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def _sacct(env: dict, job_ids: list[str]) -> dict[str, dict[str, str]]:
    """Allocation-level accounting rows (no steps) of the given jobs, keyed by job id."""
    r = _sh(
        "sacct",
        "-X",
        "-P",
        "-j",
        ",".join(job_ids),
        "-o",
        "JobID,JobName,State,ExitCode,Account,Partition,AllocTRES,Elapsed",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    return {row["JobID"]: row for row in csv.DictReader(r.stdout.splitlines(), delimiter="|")}


def _snakemake(
    env: dict, workdir: Path, *args: str, timeout: float
) -> tuple[subprocess.CompletedProcess, list[str]]:
    r = subprocess.run(
        [str(BIN / "snakemake"), "--cores", "all", *args, *FAST_POLL],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    log = r.stdout + r.stderr
    return r, SUBMITTED.findall(log)


def _rule_of_job(log: str) -> dict[str, str]:
    """SLURM job id -> 'rule_<name>' or 'group_<group>_<rules>', from the executor's log paths
    (``slurm_logs/rule_dos/4.log``; jobs with wildcards add a directory: ``slurm_logs/rule_train/0/6.log``)."""
    pattern = r"slurm_logs/((?:rule|group)_\w+)/(?:[^/\s]+/)*(\d+)\.log"
    return {jid: name for name, jid in re.findall(pattern, log)}


GPU_SNAKEFILE = """
rule all:
    input: "train.done"

rule train:
    output: "train.done"
    threads: 2
    shell: "echo CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"
"""


@pytest.mark.parametrize("style", ["gres", "gpu"])
def test_train_gpu_request_is_allocated_in_both_styles(slurm_env, tmp_path, style):
    """The profile's train request (`gres: gpu:1`) and the documented alternative (`gpu: 1` -> --gpus=1) both
    reach SLURM as one GPU: sacct's AllocTRES of the train job holds gres/gpu=1, plus the profile's CPUs/memory."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    train = profile["set-resources"]["train"]
    assert train["gres"] == "gpu:1"
    if style == "gpu":
        del train["gres"]
        train["gpu"] = 1
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    (tmp_path / "Snakefile").write_text(GPU_SNAKEFILE)

    r, job_ids = _snakemake(slurm_env, tmp_path, "--profile", str(tmp_path / "profile"), timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert len(job_ids) == 1, r.stderr[-3000:]
    row = _sacct(slurm_env, job_ids)[job_ids[0]]
    assert row["State"] == "COMPLETED", row
    assert row["Account"] == ACCOUNT, row
    tres = dict(kv.split("=", 1) for kv in row["AllocTRES"].split(","))
    assert tres.get("gres/gpu") == "1", row
    # CPUs follow the rule's threads (cpus_per_task: threads), memory the profile's train request at attempt 1
    assert tres["cpu"] == "2", row
    assert tres["mem"] == f"{eval(train['mem_mb'], {'attempt': 1})}M", row
    # the GPU is bound into the job step that runs the rule's command (what torch would see)
    assert (tmp_path / "train.done").read_text().strip() == "CUDA_VISIBLE_DEVICES=0"


def test_demo_workflow_runs_on_slurm_and_sacct_shows_every_job_completed(slurm_env, tmp_path):
    """The whole demo DAG through `--profile profiles/slurm` (profile unchanged; results in a temp dir)."""
    if not (REPO / "data" / "demo").is_dir():
        pytest.skip("demo data (data/demo) not in this checkout")
    results = tmp_path / "results"
    started = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.monotonic()
    r, job_ids = _snakemake(
        slurm_env,
        REPO,
        "--profile",
        str(PROFILE),
        "--configfile",
        "config/demo.yaml",
        "--config",
        f"results_dir={results}",
        "--slurm-logdir",
        str(tmp_path / "slurm_logs"),
        "--slurm-keep-successful-logs",
        timeout=1800,
    )
    elapsed = time.monotonic() - t0
    log = r.stdout + r.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert r.returncode == 0, log[-6000:]
    print(f"\ndemo on SLURM: {len(job_ids)} jobs in {elapsed:.0f} s (since {started})")

    rows = _sacct(slurm_env, job_ids)
    assert set(rows) == set(job_ids), f"sacct is missing jobs: {set(job_ids) - set(rows)}"
    not_completed = {
        j: (row["JobName"], row["State"]) for j, row in rows.items() if row["State"] != "COMPLETED"
    }
    assert not not_completed, not_completed
    assert {row["Account"] for row in rows.values()} == {ACCOUNT}

    rule_of = _rule_of_job(log)
    train_jobs = [j for j, name in rule_of.items() if name == "rule_train"]
    assert train_jobs, f"no train job among {rule_of}"
    for j in train_jobs:
        assert "gres/gpu=1" in rows[j]["AllocTRES"], rows[j]
    assert "rule_ensemble" in rule_of.values(), rule_of
    # scatter/gather without flooding: the demo's 4 featurize shards and 2 predict shards ran as one group job each
    names = sorted(rule_of.values())
    assert names.count("group_featurize_featurize_shard") == 1, names
    assert names.count("group_predict_predict_shard") == 1, names
    assert "rule_featurize_shard" not in names and "rule_predict_shard" not in names, names
    # the SLURM jobs built every default target: a dry run afterwards has nothing left to do
    dry = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-n",
            "--cores",
            "1",
            "--configfile",
            "config/demo.yaml",
            "--config",
            f"results_dir={results}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=slurm_env,
        timeout=300,
    )
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
