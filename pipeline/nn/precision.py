"""Numerical precision of training and inference: ``fp32`` or mixed precision through ``torch.autocast``.

Under autocast the model's matrix products run in bfloat16 (``bf16``) or float16 (``fp16``) while its gated-mean
sums, normalisations and residual streams stay in float32 and its output is float32 (``pipeline.nn.model``); the
fused CPU kernels are float32 and step aside. ``fp16`` needs gradient scaling and CUDA (CPU autocast to float16
is slow and not what the model was checked with); ``bf16`` runs on CUDA and on any CPU, and is fast on CPUs with
AVX512-BF16 or AMX (elsewhere torch emulates it, slower than fp32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the autocast context for ``precision`` on ``device`` (a no-op context for fp32); raises
    ``ValueError`` for an unknown precision or fp16 without CUDA, before any work."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device (got {device}); use bf16 or fp32 on a CPU")
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaling(precision: str) -> bool:
    """float16's narrow exponent range needs a GradScaler; bfloat16 has float32's range and does not."""
    return PRECISIONS.get(precision) is torch.float16
