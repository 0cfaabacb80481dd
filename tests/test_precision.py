"""Mixed precision (torch.autocast, bf16): the model runs under autocast on the PyTorch path (matrix products in
bf16, gated means, normalisations and residual streams in float32), close to float32 predictions, with
gradients that point the same way; the fused float32 kernels step aside under autocast."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.data.shards import collate
from pipeline.grid import N_BINS
from pipeline.nn import fused
from pipeline.nn.model import ALIGNN
from tests.helpers import (
    CRYSTALS,
    SMALL,
    TINY,
    crystal_graph,
    in_memory,
    permute_graph,
    strained_crystals,
    train_settings,
    trained_like,
)

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


def test_train_with_bf16_precision_learns_like_fp32(tmp_path):
    """train.precision bf16 on a CPU: the loss falls as with fp32 and the two runs end close."""
    from pipeline.nn.train import fit

    data = in_memory(strained_crystals(6))
    results = {}
    for p in ("fp32", "bf16"):
        cfg = train_settings(epochs=6, batch_size=3, lr=3e-3, scheduler="constant", seed=0, precision=p)
        results[p] = fit(TINY, cfg, data, data, tmp_path / p, progress=False)
    for p, r in results.items():
        losses = r.history["train_loss"].to_numpy()
        assert losses[-1] < losses[0], (p, losses)
    assert (
        abs(results["bf16"].best_val_mae - results["fp32"].best_val_mae) < 0.2 * results["fp32"].best_val_mae
    )


def test_fp16_without_cuda_is_refused_before_any_work(tmp_path):
    from pipeline.nn.precision import autocast
    from pipeline.nn.train import fit

    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        autocast("fp16", torch.device("cpu"))
    data = in_memory(strained_crystals(3))
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        fit(
            TINY,
            train_settings(epochs=1, batch_size=3, precision="fp16"),
            data,
            data,
            tmp_path,
            progress=False,
        )
    assert not (tmp_path / "model.pt").exists()


def test_predict_batches_in_bf16_stays_close_to_fp32(batch):
    from pipeline.nn.inference import predict_batches

    torch.manual_seed(0)
    model = trained_like(ALIGNN(SMALL), seed=1)
    ids32, p32 = predict_batches(model, [batch], torch.device("cpu"), "fp32")
    ids16, p16 = predict_batches(model, [batch], torch.device("cpu"), "bf16")
    assert ids32 == ids16 and p16.dtype == p32.dtype == np.float32
    assert 0 < float(np.abs(p16 - p32).mean()) < 5e-4  # bf16 really ran, and within the bound
