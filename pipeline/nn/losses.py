"""Training losses: the spectral term plus, optionally, terms for what users read off the spectrum.

The property terms are computed differentiably from the predicted spectrum in the properties stage's convention
(``pipeline.physics.thermo``: the positive-frequency part scaled to 3N states, trapezoid cells, the same mode kernels),
per vibrational mode so that no atom count is needed:

    c(T) = C_V(T) / (3 N R)      s(T) = S_vib(T) / (3 N R)      n = negative-frequency fraction of the bin sums

and the loss adds ``weight_cv * |c_pred - c_dft|`` and ``weight_s_vib * |s_pred - s_dft|`` (mean over materials
and ``property_temperatures``) and ``weight_negative * |n_pred - n_dft|``. With all weights 0 (the schema default)
the loss is the spectral term alone, as in the paper. A model with a stability head (``model.stability_head`` shared or separate) adds
``weight_stability_head * |head - n_dft|``: the head learns the DFT negative fraction directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pipeline.grid import FREQ_CM
from pipeline.physics import thermo


class PropertyTerms(nn.Module):
    """Per-mode C_V, S_vib at ``temperatures`` and the negative fraction of (batch, bins) spectra."""

    def __init__(self, temperatures: Sequence[float], freq_cm: np.ndarray = FREQ_CM):
        super().__init__()
        freq = np.asarray(freq_cm, dtype=np.float64)
        pos = thermo.positive_mask(freq)
        kernels = thermo._mode_kernels(freq[pos], np.asarray(temperatures, dtype=np.float64))
        weights = thermo.trapezoid_weights(freq[pos])
        self.register_buffer("pos", torch.from_numpy(pos))
        self.register_buffer("neg", torch.from_numpy(freq < 0))
        self.register_buffer("w", torch.from_numpy(weights).float())
        self.register_buffer("k_cv", torch.from_numpy(kernels["cv"]).float())
        self.register_buffer("k_s", torch.from_numpy(kernels["s"]).float())

    def forward(
        self, dos: torch.Tensor, eps: float = 1e-8
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dos = dos.float()
        cells = dos[:, self.pos] * self.w  # states in each trapezoid cell, unnormalised
        modes = cells.sum(dim=1, keepdim=True).clamp_min(eps)
        cv = cells @ self.k_cv / modes
        s = cells @ self.k_s / modes
        neg = dos[:, self.neg].sum(dim=1) / dos.sum(dim=1).clamp_min(eps)
        return cv, s, neg


class SpectrumLoss(nn.Module):
    """``spectral(pred, target)`` plus the weighted property terms (see the module docstring); the weights and
    temperatures are the ``train`` section's ``weight_cv``, ``weight_s_vib``, ``weight_negative`` and
    ``property_temperatures`` (:class:`pipeline.nn.train.TrainConfig`)."""

    def __init__(
        self,
        spectral: nn.Module,
        weight_cv: float,
        weight_s_vib: float,
        weight_negative: float,
        temperatures: Sequence[float],
        weight_stability_head: float = 0.0,
    ):
        """``weight_stability_head`` > 0: ``pred`` carries the stability head's value as one column after the
        spectrum's (:func:`pipeline.nn.model.split_outputs`); 0: ``pred`` is the spectrum alone."""
        super().__init__()
        self.spectral = spectral
        self.weights = (float(weight_cv), float(weight_s_vib), float(weight_negative))
        self.weight_head = float(weight_stability_head)
        self.terms = PropertyTerms(temperatures) if any(self.weights) or self.weight_head else None

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        head = None
        if self.weight_head:
            pred, head = pred[:, : target.shape[1]], pred[:, target.shape[1]]
        loss = self.spectral(pred, target)
        if self.terms is None:
            return loss
        t = self.terms(target)
        if any(self.weights):
            p = self.terms(pred)
            for weight, a, b in zip(self.weights, p, t, strict=True):
                if weight:
                    loss = loss + weight * (a - b).abs().mean()
        if head is not None:
            loss = loss + self.weight_head * (head - t[2]).abs().mean()
        return loss
