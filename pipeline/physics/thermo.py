"""Harmonic thermodynamics from a phonon DOS on the paper's grid (eqs. 2-3 of Gurunathan et al. 2023), vectorised.

Convention (chosen because it reproduces the jarvis-leaderboard ``dft_3d_ph_heat_capacity`` labels to machine
precision from the leaderboard's 66-bin spectra; see ``tests/test_thermo.py::test_reproduces_leaderboard_labels``):

* the DOS is sampled at the bin centres ``pipeline.grid.FREQ_CM`` (-300, -280, ..., 1000 cm^-1);
* only the non-negative part is used: the 51 points 0, 20, ..., 1000 cm^-1 ("positive-frequency part");
* it is rescaled so that its trapezoid integral over those points is 3N (N = atoms per formula unit);
* every property integral is a trapezoid over the same points, and the omega = 0 point carries zero weight
  (jarvis-tools ``PhononDos.heat_capacity`` sets ``Cp[0] = 0``; the entropy and free-energy integrands diverge
  logarithmically there, so zero is also the only finite choice for them).

Measured on the 1,412 labelled ids with structures in ../shared/data: median |relative error| of C_V(300 K)
4.5e-6 (CODATA constants below; 0 to 1e-15 with jarvis-tools' older constants). The alternatives are clearly worse:
normalising over f > 0 only 0.02 %, rectangle rule 0.045 %, including negative frequencies 0.05 % with 30 % outliers.

A consequence worth knowing: the high-temperature limit is 3NR * (1 - 10 cm^-1 * g(0) / 3N), exactly 3NR
(Dulong-Petit) when g(0) = 0.

Why hand-written rather than phonopy's ``ThermalProperties``: phonopy works on mode frequencies of one material
(sampling mesh), not on a binned DOS, and loops per material; here the whole dataset is one matrix product
``(n_materials x 51) @ (51 x n_temperatures)`` (41,000 x 200 in well under a second; ``benchmarks/properties.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.grid import FREQ_CM

# CODATA 2018 exact SI constants.
H_PLANCK = 6.62607015e-34  # J s
K_BOLTZMANN = 1.380649e-23  # J/K
N_AVOGADRO = 6.02214076e23  # 1/mol
C_LIGHT_CM = 2.99792458e10  # cm/s
R_GAS = K_BOLTZMANN * N_AVOGADRO  # J/(mol K)
#: h c / k_B in cm K: x = HC_OVER_KB * nu[cm^-1] / T
HC_OVER_KB = H_PLANCK * C_LIGHT_CM / K_BOLTZMANN
#: energy of one cm^-1 mode per mole, in kJ/mol
CM_TO_KJ_PER_MOL = H_PLANCK * C_LIGHT_CM * N_AVOGADRO / 1e3


def positive_mask(freq_cm: np.ndarray = FREQ_CM) -> np.ndarray:
    """Grid points used for properties and normalisation: frequency >= 0."""
    return np.asarray(freq_cm) >= 0.0


def trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """Weights w with ``w @ y == np.trapezoid(y, x)`` for any y sampled on the (possibly uneven) points x."""
    x = np.asarray(x, dtype=np.float64)
    w = np.zeros_like(x)
    dx = np.diff(x)
    w[:-1] += dx / 2
    w[1:] += dx / 2
    return w


def _as_2d(dos: np.ndarray) -> np.ndarray:
    arr = np.asarray(dos, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"DOS must be 1-D or 2-D (materials x bins), got shape {arr.shape}")
    return arr


def positive_area(dos: np.ndarray, freq_cm: np.ndarray = FREQ_CM) -> np.ndarray:
    """Trapezoid area of the non-negative-frequency part, per material (DOS units x cm^-1)."""
    m = positive_mask(freq_cm)
    return _as_2d(dos)[:, m] @ trapezoid_weights(np.asarray(freq_cm)[m])


def scale_to_3n(
    dos: np.ndarray, n_atoms_per_fu: np.ndarray | float, freq_cm: np.ndarray = FREQ_CM
) -> np.ndarray:
    """Rescale (max-normalised) spectra so the positive-frequency trapezoid area is 3N states per formula unit.

    Returns states per cm^-1 per formula unit on the full grid (negative part scaled by the same factor).
    Spectra with zero positive area come back as NaN rows (callers reject them).
    """
    g = _as_2d(dos)
    area = positive_area(g, freq_cm)
    n = np.broadcast_to(np.asarray(n_atoms_per_fu, dtype=np.float64), area.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(area > 0, 3.0 * n / area, np.nan)
    return g * factor[:, None]


def _mode_kernels(freq_cm: np.ndarray, temperatures: np.ndarray) -> dict[str, np.ndarray]:
    """Per-mode C_V/k_B, S/k_B and F/(k_B T)-like kernels on (positive freq points x temperatures).

    Entries at omega = 0 are zero by convention (see module docstring).
    """
    nu = np.asarray(freq_cm, dtype=np.float64)[:, None]
    t = np.asarray(temperatures, dtype=np.float64)[None, :]
    if np.any(t <= 0):
        raise ValueError("temperatures must be > 0 K")
    pos = np.broadcast_to(nu > 0, (nu.shape[0], t.shape[1]))
    x = np.where(pos, HC_OVER_KB * np.where(nu > 0, nu, 1.0) / t, 1.0)
    with np.errstate(over="ignore", under="ignore"):
        emx = np.exp(-x)  # exp(-x) is stable for large x
        om = -np.expm1(-x)  # 1 - exp(-x)
        cv = x * x * emx / (om * om)  # x^2 e^x/(e^x-1)^2
        n_occ = emx / om  # Bose occupation 1/(e^x - 1)
        s = x * n_occ - np.log(om)  # (n+1)ln(n+1) - n ln n
        f_thermal = np.log(om)  # F_thermal per mode / (k_B T)
    zero = np.zeros_like(x)
    return {
        "cv": np.where(pos, cv, zero),
        "s": np.where(pos, s, zero),
        "f_thermal": np.where(pos, f_thermal, zero),
    }


@dataclass(frozen=True)
class ThermalProperties:
    """Molar harmonic properties per mole of formula units; arrays are (materials x temperatures) unless noted."""

    temperatures: np.ndarray  # K
    cv: np.ndarray  # J/(mol K)
    s_vib: np.ndarray  # J/(mol K)
    f_vib: np.ndarray  # kJ/mol (including zero-point energy)
    zpe: np.ndarray  # kJ/mol, (materials,)

    def gravimetric(self, formula_mass_g_per_mol: np.ndarray) -> ThermalProperties:
        """Same quantities per kg: J/(kg K) for C_V and S_vib, kJ/kg for F_vib and ZPE."""
        per_kg = 1e3 / np.asarray(formula_mass_g_per_mol, dtype=np.float64)
        return ThermalProperties(
            self.temperatures,
            self.cv * per_kg[:, None],
            self.s_vib * per_kg[:, None],
            self.f_vib * per_kg[:, None],
            self.zpe * per_kg,
        )


def thermal_properties(
    dos: np.ndarray,
    n_atoms_per_fu: np.ndarray | float,
    temperatures: np.ndarray | list[float],
    freq_cm: np.ndarray = FREQ_CM,
) -> ThermalProperties:
    """C_V, S_vib, F_vib (eqs. 2-3 and the harmonic free energy) and ZPE for many spectra at many temperatures.

    ``dos``: (materials x bins) on ``freq_cm``, any scale (each row is rescaled to 3N first).
    """
    temps = np.atleast_1d(np.asarray(temperatures, dtype=np.float64))
    g = scale_to_3n(dos, n_atoms_per_fu, freq_cm)
    m = positive_mask(freq_cm)
    nu = np.asarray(freq_cm, dtype=np.float64)[m]
    gw = g[:, m] * trapezoid_weights(nu)  # states in each trapezoid cell
    k = _mode_kernels(nu, temps)
    cv = R_GAS * (gw @ k["cv"])
    s = R_GAS * (gw @ k["s"])
    zpe = CM_TO_KJ_PER_MOL * 0.5 * (gw @ nu)
    f = zpe[:, None] + (R_GAS / 1e3) * temps[None, :] * (gw @ k["f_thermal"])
    return ThermalProperties(temps, cv, s, f, zpe)


def negative_fraction(dos: np.ndarray, freq_cm: np.ndarray = FREQ_CM) -> np.ndarray:
    """Fraction of the integrated DOS (bin sums) lying at frequencies below 0 cm^-1; NaN for an all-zero DOS."""
    g = _as_2d(dos)
    total = g.sum(axis=1)
    neg = g[:, np.asarray(freq_cm) < 0].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, neg / total, np.nan)


def is_stable(dos: np.ndarray, unstable_fraction: float, freq_cm: np.ndarray = FREQ_CM) -> np.ndarray:
    """Dynamically stable (paper, Sec. III A): at most ``unstable_fraction`` (``properties.unstable_fraction``) of
    the DOS area below 0 cm^-1."""
    return negative_fraction(dos, freq_cm) <= unstable_fraction


def second_moment_debye_temperature(dos: np.ndarray, freq_cm: np.ndarray = FREQ_CM) -> np.ndarray:
    """DOS-based Debye temperature theta_D = (h c / k_B) sqrt(5/3 <nu^2>) over the positive part, in K.

    The second-moment Debye temperature (e.g. Grimvall, Thermophysical Properties of Materials, ch. 6): exact for
    a Debye DOS (<nu^2> = 3/5 nu_D^2). Used when no elastic tensor is available; labelled 'dos_moment'.
    """
    g = _as_2d(dos)
    m = positive_mask(freq_cm)
    nu = np.asarray(freq_cm, dtype=np.float64)[m]
    gw = g[:, m] * trapezoid_weights(nu)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_nu2 = (gw @ (nu * nu)) / gw.sum(axis=1)
    return HC_OVER_KB * np.sqrt(5.0 / 3.0 * mean_nu2)


def cv_at_temperatures(dos: np.ndarray, n_atoms_per_fu: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """C_V (J/(mol K)) of each material at its own temperature (``temperatures`` shape (materials,) or (m, k)).

    For C_V at fractions of each material's Debye temperature. Loops over the (few) columns, not the materials.
    """
    t = np.asarray(temperatures, dtype=np.float64)
    t2 = t[:, None] if t.ndim == 1 else t
    g = scale_to_3n(dos, n_atoms_per_fu)
    m = positive_mask()
    nu = FREQ_CM[m]
    gw = g[:, m] * trapezoid_weights(nu)
    out = np.full(t2.shape, np.nan)
    ok = np.isfinite(t2) & (t2 > 0)
    x = HC_OVER_KB * nu[None, :, None] / np.where(ok, t2, 1.0)[:, None, :]
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        emx = np.exp(-x)
        om = -np.expm1(-x)
        k = np.where(nu[None, :, None] > 0, x * x * emx / (om * om), 0.0)
    vals = R_GAS * np.einsum("mf,mft->mt", gw, k)
    out[ok] = vals[ok]
    return out[:, 0] if t.ndim == 1 else out
