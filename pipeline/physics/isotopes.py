"""Isotopic mass variance Gamma and the phonon-isotope scattering rate (paper eq. 4).

Isotope masses and natural abundances come from phonopy's table (de Laeter et al., IUPAC 2000), the source the
paper cites. For a compound with site fractions c_n and isotopes i of element n (abundance f_in, mass m_in):

    Gamma = sum_n c_n sum_i f_in (m_in - mbar_n)^2 / mbar^2,   mbar_n = sum_i f_in m_in,  mbar = sum_n c_n mbar_n

which is the formula used by jarvis-tools ``PhononDos.phonon_isotope_scattering`` (the paper's authors' code).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from phonopy.structure.atomic_data import get_atomic_data

from pipeline.grid import FREQ_CM, THZ_TO_CM
from pipeline.physics.thermo import positive_mask, scale_to_3n, trapezoid_weights


@cache
def _element_moments(symbol: str) -> tuple[float, float] | None:
    """(mean isotope mass, abundance-weighted mass variance) of one element, or None without natural isotopes."""
    isotopes = get_atomic_data().isotope_data.get(symbol)
    if not isotopes:
        return None
    total = sum(ab for _, _, ab in isotopes)
    if total <= 0:
        return None
    mean = sum(ab * m for _, m, ab in isotopes) / total
    var = sum(ab * (m - mean) ** 2 for _, m, ab in isotopes) / total
    return mean, var


@dataclass(frozen=True)
class MassVariance:
    gamma: float  # dimensionless; NaN when unknown
    flag: str  # 'ok', 'no_isotope_variance' (every element monoisotopic) or 'no_isotope_data:<El,...>'


def mass_variance(elements: Iterable[str]) -> MassVariance:
    """Gamma of a composition given as the element of every site (or any list with the right proportions)."""
    counts = Counter(elements)
    if not counts:
        return MassVariance(math.nan, "no_isotope_data:<empty>")
    missing = sorted(el for el in counts if _element_moments(el) is None)
    if missing:
        return MassVariance(math.nan, "no_isotope_data:" + ",".join(missing))
    n_sites = sum(counts.values())
    mbar = sum(c / n_sites * _element_moments(el)[0] for el, c in counts.items())
    var = sum(c / n_sites * _element_moments(el)[1] for el, c in counts.items())
    gamma = var / mbar**2
    return MassVariance(gamma, "ok" if gamma > 0 else "no_isotope_variance")


def mass_variances(element_lists: Sequence[Iterable[str]]) -> tuple[np.ndarray, list[str]]:
    """Vector version: (gamma array, flag list)."""
    results = [mass_variance(els) for els in element_lists]
    return np.array([r.gamma for r in results], dtype=np.float64), [r.flag for r in results]


def isotope_scattering_rate_ghz(
    dos: np.ndarray, n_atoms_per_fu: np.ndarray, gamma: np.ndarray, freq_cm: np.ndarray = FREQ_CM
) -> np.ndarray:
    """Eq. 4, tau_i^-1 = integral pi/6 V_at Gamma omega^2 g(omega) d omega, in GHz.

    Evaluated as jarvis-tools does (the paper's reference implementation): g is the DOS per unit volume, so
    V_at g is the per-atom DOS (3 states per atom, here 3N per formula unit / N), frequencies in THz, and the
    THz-valued integral is read as 1e12 Hz. Returned in GHz (x 1e3). V_at cancels in this form.
    Only the positive-frequency part contributes (trapezoid, same convention as :mod:`pipeline.physics.thermo`).
    """
    n = np.asarray(n_atoms_per_fu, dtype=np.float64)
    g = scale_to_3n(dos, n, freq_cm) / n[:, None]  # states per cm^-1 per atom
    m = positive_mask(freq_cm)
    nu_cm = np.asarray(freq_cm, dtype=np.float64)[m]
    nu_thz = nu_cm / THZ_TO_CM
    g_thz = g[:, m] * THZ_TO_CM  # states per THz per atom
    integral_thz = (g_thz * nu_thz**2) @ trapezoid_weights(nu_thz)
    return (math.pi / 6.0) * np.asarray(gamma, dtype=np.float64) * integral_thz * 1e3
