"""Mixed precision (torch.autocast, bf16): the model runs under autocast on the PyTorch path (matrix products in
bf16, gated means, normalisations and residual streams in float32), close to float32 predictions, with
gradients that point the same way; the fused float32 kernels step aside under autocast."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline import fused
from pipeline.grid import N_BINS
from pipeline.model import ALIGNN
from pipeline.shards import collate
from tests.test_model import CRYSTALS, SMALL, crystal_graph, permute_graph, trained_like

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


@pytest.fixture
def batch():
    return collate([crystal_graph(n) for n in CRYSTALS])


@pytest.mark.parametrize("numbering", ["as_built", "permuted"])  # regular-fanout path and general path
@pytest.mark.parametrize("grad", [False, True])
def test_bf16_autocast_prediction_is_close_to_float32(batch, numbering, grad):
    torch.manual_seed(0)
    if numbering == "permuted":
        batch = permute_graph(batch, seed=3)
    model = trained_like(ALIGNN(SMALL), seed=1)
    with torch.no_grad():
        ref = model(batch)
    with torch.set_grad_enabled(grad), torch.autocast(**BF16):
        out = model(batch)
    assert out.dtype == torch.float32 and out.shape == (len(CRYSTALS), N_BINS)
    assert ref.abs().max() > 0.1
    err = (out.detach() - ref).abs()
    assert float(err.mean()) < 5e-4, float(err.mean())  # the bound on the spectral MAE difference
    assert float(err.max()) < 1e-2


def test_bf16_autocast_training_step_gradients_follow_float32(batch):
    torch.manual_seed(0)
    model = trained_like(ALIGNN(SMALL), seed=2).train()
    weights = torch.linspace(0, 1, N_BINS)

    def grads(amp: bool) -> torch.Tensor:
        m = copy.deepcopy(model)
        with torch.autocast(**BF16, enabled=amp):
            loss = (m(batch) * weights).sum()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])

    ref, amp = grads(False), grads(True)
    assert torch.isfinite(amp).all()
    cosine = torch.nn.functional.cosine_similarity(ref, amp, dim=0)
    assert float(cosine) > 0.99, float(cosine)


def test_fused_kernels_step_aside_under_autocast(batch, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a float32 kernel ran under autocast")

    for name in ("FusedEdgeConv", "FusedNormSiLU"):
        monkeypatch.setattr(getattr(fused, name), "apply", refuse)
    monkeypatch.setattr(fused, "edge_conv_inference", refuse)
    model = trained_like(ALIGNN(SMALL), seed=1)
    with torch.no_grad(), torch.autocast(**BF16):
        model(batch)
