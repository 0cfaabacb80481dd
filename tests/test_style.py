"""The repository's own style gates, run by CI: ruff (lint + format), snakefmt, snakemake --lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    exe = BIN / cmd[0] if (BIN / cmd[0]).exists() else shutil.which(cmd[0])
    if exe is None:
        pytest.skip(f"{cmd[0]} not installed")
    return subprocess.run([str(exe), *cmd[1:]], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_lint():
    r = _run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format():
    r = _run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_snakefmt():
    r = _run("snakefmt", "--check", "Snakefile", "rules")
    assert r.returncode == 0, r.stdout + r.stderr


def test_snakemake_lint_is_clean():
    r = _run("snakemake", "--lint", "--configfile", "config/demo.yaml")
    assert r.returncode == 0 and "Lints for" not in r.stdout + r.stderr, r.stdout + r.stderr
