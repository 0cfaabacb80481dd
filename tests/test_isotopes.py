"""Isotopic mass variance and the eq. 4 scattering rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.grid import FREQ_CM, N_BINS
from pipeline.physics.isotopes import isotope_scattering_rate_ghz, mass_variance, mass_variances


def test_monoisotopic_compound_has_no_variance_and_is_flagged():
    mv = mass_variance(["Na", "F", "Na", "F"])  # both monoisotopic
    assert mv.gamma == 0.0
    assert mv.flag == "no_isotope_variance"


def test_silicon_gamma_from_abundances():
    """Si: 28 (92.223 %), 29 (4.685 %), 30 (3.092 %) -> Gamma ~ 2.0e-4 (Tamura's value for natural Si)."""
    mv = mass_variance(["Si", "Si"])
    assert mv.flag == "ok"
    assert mv.gamma == pytest.approx(2.01e-4, rel=0.01)


def test_gamma_depends_on_proportions_not_cell_size():
    assert mass_variance(["Ga", "As"]).gamma == pytest.approx(mass_variance(["Ga", "As"] * 4).gamma)
    assert mass_variance(["Ga", "As"]).gamma != pytest.approx(mass_variance(["Ga", "Ga", "As"]).gamma)


def test_element_without_natural_isotopes_is_flagged_not_crashed():
    mv = mass_variance(["Tc", "O", "O"])
    assert math.isnan(mv.gamma)
    assert mv.flag == "no_isotope_data:Tc"
    gammas, flags = mass_variances([["Si"], ["Tc"], []])
    assert np.isnan(gammas[1]) and np.isnan(gammas[2])
    assert flags[0] == "ok"


def test_rate_matches_jarvis_tools_implementation():
    """Same number as jarvis-tools PhononDos.phonon_isotope_scattering (the paper authors' code) for GaAs."""
    from jarvis.analysis.phonon.dos import PhononDos
    from jarvis.core.atoms import Atoms

    from pipeline.physics.thermo import scale_to_3n

    if not hasattr(np, "trapz"):  # jarvis-tools still calls np.trapz, removed in numpy 2
        np.trapz = np.trapezoid
    rng = np.random.default_rng(0)
    dos = rng.random(N_BINS)
    atoms = Atoms(
        lattice_mat=np.eye(3) * 5.65,
        coords=[[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0], [0.75, 0.75, 0.25]],
        elements=["Ga", "As", "Ga", "As"],
        cartesian=False,
    )
    pos = FREQ_CM >= 0
    per_cell = scale_to_3n(dos, 2)[0] * 2  # 4-atom cell = 2 formula units
    ref_hz = PhononDos(phonon_dos=per_cell[pos], phonon_freq_cm=FREQ_CM[pos]).phonon_isotope_scattering(atoms)
    ours = isotope_scattering_rate_ghz(
        dos[None], np.array([2]), np.array([mass_variance(["Ga", "As"]).gamma])
    )
    assert ours[0] == pytest.approx(ref_hz / 1e9, rel=1e-10)


def test_rate_weights_high_frequencies():
    """tau^-1 ~ <omega^2>: moving all weight from 100 to 200 cm^-1 multiplies it by 4."""
    low = np.where(FREQ_CM == 100, 1.0, 0.0)
    high = np.where(FREQ_CM == 200, 1.0, 0.0)
    r = isotope_scattering_rate_ghz(np.stack([low, high]), np.array([1, 1]), np.array([1e-4, 1e-4]))
    assert r[1] / r[0] == pytest.approx(4.0)
