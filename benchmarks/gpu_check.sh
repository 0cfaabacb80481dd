#!/usr/bin/env bash
# One prepared GPU check (<= 8 min): paper preset, fp32 and bf16 AMP training (loss must fall), CUDA vs CPU
# predictions, graphs/s against alignn when installed. Run from the repository root on a CUDA machine with the
# project's venv (a CUDA torch, see README); writes benchmarks/results/gpu_check.json and exits non-zero when a
# check fails. Extra arguments go to benchmarks/gpu_check.py (e.g. --steps 100).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout 480 "$PY" benchmarks/gpu_check.py --device cuda "$@"
