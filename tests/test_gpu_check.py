"""benchmarks/gpu_check.py, the prepared GPU check: its CPU-side logic (batches from the demo crystals, fp32 and
bf16 training steps, the report and its checks) on the CPU with a tiny preset."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_runs_its_cpu_side_and_reports_every_check(tmp_path):
    out = tmp_path / "gpu_check.json"
    rc = _module().main(
        ["--device", "cpu", "--preset", "demo", "--steps", "4", "--batch-size", "2", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    assert [r["amp"] for r in report["runs"]] == ["fp32", "bf16"]
    assert set(report["checks"]) == {"loss_falls_fp32", "loss_falls_bf16", "device_matches_cpu"}
    assert rc == (0 if all(report["checks"].values()) else 1)
    assert all(r["graphs_per_s"] > 0 and r["infer_graphs_per_s"] > 0 for r in report["runs"])


def test_the_loss_check_needs_a_finite_falling_loss():
    falls = _module().loss_falls
    assert falls([1.0, 0.9, 0.5, 0.4])
    assert not falls([0.4, 0.5, 0.9, 1.0])  # rising
    assert not falls([1.0, float("nan"), 0.5, 0.4])  # a NaN step
    assert not falls([0.5] * 20)  # flat
