"""pipeline.nn.losses: the property terms are the properties stage's C_V and S_vib per mode (same convention as
pipeline.physics.thermo), differentiable; with zero weights the loss is the spectral term alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.grid import FREQ_CM
from pipeline.nn.losses import PropertyTerms, SpectrumLoss
from pipeline.physics import thermo


def _spectra(n: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    peaks = rng.uniform(50, 900, (n, 3))
    g = np.exp(-(((FREQ_CM[None, None, :] - peaks[:, :, None]) / 60.0) ** 2)).sum(axis=1)
    g[:2, FREQ_CM < 0] += 0.3  # two with imaginary modes
    return g / g.max(axis=1, keepdims=True)


def test_property_terms_match_the_properties_stage_per_mode():
    g, n = _spectra(), np.array([2, 3, 4, 5, 2, 3, 4, 5])
    temps = [50.0, 300.0, 1000.0]
    cv, s, neg = PropertyTerms(temps)(torch.tensor(g, dtype=torch.float32))
    ref = thermo.thermal_properties(g, n, temps)
    np.testing.assert_allclose(cv.numpy(), ref.cv / (3 * n[:, None] * thermo.R_GAS), rtol=2e-5)
    np.testing.assert_allclose(s.numpy(), ref.s_vib / (3 * n[:, None] * thermo.R_GAS), rtol=2e-5)
    np.testing.assert_allclose(neg.numpy(), thermo.negative_fraction(g), rtol=1e-5)
    assert (cv.numpy()[:, -1] > 0.9).all()  # Dulong-Petit: 1 k_B per mode at 1000 K for these spectra


def test_zero_weights_are_the_spectral_loss_and_property_terms_have_gradients():
    g = torch.tensor(_spectra(), dtype=torch.float32)
    pred = (g + 0.05 * torch.rand(g.shape, generator=torch.Generator().manual_seed(0))).requires_grad_()
    plain = torch.nn.L1Loss()
    temperatures = [100.0, 300.0]
    assert SpectrumLoss(plain, 0, 0, 0, temperatures)(pred, g).item() == pytest.approx(plain(pred, g).item())
    loss = SpectrumLoss(
        plain, weight_cv=1.0, weight_s_vib=1.0, weight_negative=1.0, temperatures=temperatures
    )(pred, g)
    assert loss.item() > plain(pred, g).item()
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_stability_head_term_is_the_distance_to_the_dft_negative_fraction():
    g = torch.tensor(_spectra(), dtype=torch.float32)
    truth = torch.tensor(thermo.negative_fraction(_spectra()), dtype=torch.float32)
    assert (truth[:2] > 0.2).all() and (truth[2:] < 0.05).all()  # the two with imaginary modes
    plain = torch.nn.L1Loss()
    head = torch.linspace(0.0, 0.3, len(g)).requires_grad_()
    pred = torch.cat([g, head[:, None]], dim=1)
    loss = SpectrumLoss(plain, 0, 0, 0, [300.0], weight_stability_head=2.0)(pred, g)
    # the spectrum is exact, so the loss is the head term alone
    assert loss.item() == pytest.approx(2.0 * (head.detach() - truth).abs().mean().item(), rel=1e-5)
    loss.backward()
    assert (head.grad != 0).all()
    exact = torch.cat([g, truth[:, None]], dim=1)
    assert SpectrumLoss(plain, 0, 0, 0, [300.0], weight_stability_head=2.0)(exact, g).item() < 1e-6
