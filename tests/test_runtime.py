"""pipeline.runtime: the glibc malloc settings of the torch stages stop large tensors from being page-faulted in
anew on every allocation (counted as minor page faults, not timed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from pipeline.runtime import tune_malloc_for_torch
applied = tune_malloc_for_torch()
def step():  # a training-like pattern: two live 64 MiB activations, then both freed
    x = torch.ones(16 << 20)
    y = x + 1
    del x, y
for _ in range(5):  # warm-up: the heap reaches its steady layout
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

PAGES_PER_TENSOR = (64 << 20) // os.sysconf("SC_PAGE_SIZE")


def _probe(setting: str) -> tuple[bool, int]:
    env = {**os.environ, "PHONON_MALLOC_TUNING": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_malloc_reuses_large_blocks_instead_of_faulting_them_in_again():
    applied, faults = _probe("1")
    default_applied, default_faults = _probe("0")
    assert applied and not default_applied
    assert default_faults > 5 * PAGES_PER_TENSOR, f"glibc default: only {default_faults} faults"
    # typically 0-3 blocks' worth (the heap layout still shifts now and then) against all 10 by default
    assert faults <= default_faults // 2, f"{faults} minor faults for 10 reused 64 MiB blocks"
