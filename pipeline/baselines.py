"""Analytic DOS baselines of the paper (Sec. III B, Fig. 9): Debye (linear) and Born-von Karman (sinusoidal)
dispersions, one longitudinal and two transverse acoustic branches with the VRH sound velocities of
:mod:`pipeline.debye`, each branch filling a Debye sphere q_D = (6 pi^2 / V_at)^(1/3) with N states per formula
unit (3N in total, so all optical modes are folded into the acoustic branches, as in the paper's Al2O3 example).

* Debye:  omega_b(q) = v_b q                                  -> cut-off omega_b = v_b q_D
* BvK:    omega_b(q) = (2/pi) v_b q_D sin(pi q / (2 q_D))       -> same slope v_b at q -> 0, maximum (2/pi) v_b q_D

The DOS is built as the exact number of states in each 20 cm^-1 bin (cumulative count N (q(omega)/q_D)^3
differenced at the bin edges, centre +- 10 cm^-1) divided by the bin width, which handles the integrable van Hove
singularity of the BvK branch at its maximum. Materials without an elastic tensor (no sound velocity) get no
baseline; callers count them.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.debye import SoundVelocities
from pipeline.grid import FREQ_CM, GRID_STEP_CM

C_LIGHT_CM = 2.99792458e10  # cm/s


def debye_wavevector(volume_per_atom_a3: float) -> float:
    """q_D in 1/m for one atom per V_at (Angstrom^3)."""
    return (6.0 * math.pi**2 / (volume_per_atom_a3 * 1e-30)) ** (1.0 / 3.0)


def _to_cm(omega_rad_s: float) -> float:
    return omega_rad_s / (2.0 * math.pi * C_LIGHT_CM)


def _bin_edges(freq_cm: np.ndarray = FREQ_CM) -> tuple[np.ndarray, np.ndarray]:
    return freq_cm - GRID_STEP_CM / 2, freq_cm + GRID_STEP_CM / 2


def _debye_fraction(nu: np.ndarray, nu_max: float) -> np.ndarray:
    """Fraction of a branch's states below nu for a linear dispersion: (nu / nu_max)^3."""
    return np.clip(nu / nu_max, 0.0, 1.0) ** 3


def _bvk_fraction(nu: np.ndarray, nu_max: float) -> np.ndarray:
    """Fraction below nu for omega = nu_max sin(pi q / (2 q_D)): ((2/pi) arcsin(nu / nu_max))^3."""
    return ((2.0 / math.pi) * np.arcsin(np.clip(nu / nu_max, 0.0, 1.0))) ** 3


def model_dos(
    velocities: SoundVelocities, volume_per_atom: float, n_atoms_per_fu: int, kind: str, freq_cm=FREQ_CM
) -> np.ndarray:
    """Binned DOS (states per cm^-1 per formula unit, total 3N) of the 'debye' or 'bvk' model on ``freq_cm``."""
    q_d = debye_wavevector(volume_per_atom)
    lo, hi = _bin_edges(np.asarray(freq_cm, dtype=np.float64))
    dos = np.zeros(len(lo))
    for v in (velocities.longitudinal, velocities.transverse, velocities.transverse):
        if kind == "debye":
            nu_max = _to_cm(v * q_d)
            frac = _debye_fraction
        elif kind == "bvk":
            nu_max = _to_cm(2.0 / math.pi * v * q_d)
            frac = _bvk_fraction
        else:
            raise ValueError(f"unknown baseline kind '{kind}' (debye | bvk)")
        dos += n_atoms_per_fu * (frac(hi, nu_max) - frac(lo, nu_max)) / GRID_STEP_CM
    return dos


def model_spectra(
    velocities: list[SoundVelocities | None],
    volume_per_atom: np.ndarray,
    n_atoms_per_fu: np.ndarray,
    kind: str,
) -> np.ndarray:
    """(materials x bins) model DOS, NaN rows where the sound velocity is missing."""
    out = np.full((len(velocities), len(FREQ_CM)), np.nan)
    for i, v in enumerate(velocities):
        if v is not None:
            out[i] = model_dos(v, float(volume_per_atom[i]), int(n_atoms_per_fu[i]), kind)
    return out
