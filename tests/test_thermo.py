"""pipeline.physics.thermo against physical limits, closed forms and the jarvis-leaderboard heat-capacity labels."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from functools import reduce
from math import gcd
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from pipeline.grid import FREQ_CM, N_BINS
from pipeline.physics import thermo

R = thermo.R_GAS


def debye_dos(nu_d: float, freq: np.ndarray = FREQ_CM) -> np.ndarray:
    """g ~ nu^2 below the cutoff, sampled at the grid points (zero at 0 and below)."""
    return np.where((freq > 0) & (freq <= nu_d), freq**2, 0.0)


def einstein_dos(nu_e: float, freq: np.ndarray = FREQ_CM) -> np.ndarray:
    return np.where(np.isclose(freq, nu_e), 1.0, 0.0)


def debye_cv_closed_form(t_over_theta: float) -> float:
    """C_V / (3 R) of the continuum Debye model: 3 (T/theta)^3 int_0^{theta/T} x^4 e^x / (e^x - 1)^2 dx."""
    xd = 1.0 / t_over_theta
    val, _ = integrate.quad(lambda x: x**4 * np.exp(x) / np.expm1(x) ** 2 if x > 0 else 0.0, 0, xd)
    return 3.0 * t_over_theta**3 * val


def test_rescaled_positive_area_is_3n():
    rng = np.random.default_rng(0)
    dos = rng.random((5, N_BINS))
    n = np.array([1, 2, 3, 5, 8])
    g = thermo.scale_to_3n(dos, n)
    assert np.allclose(thermo.positive_area(g), 3 * n)


def test_einstein_dos_matches_closed_form():
    """A single mode at nu_E: C_V = 3NR x^2 e^x/(e^x-1)^2, S = 3NR [x/(e^x-1) - ln(1-e^-x)], ZPE = 3N h c nu/2."""
    nu_e, n = 400.0, 2
    temps = np.array([20.0, 100.0, 300.0, 1000.0, 5000.0])
    p = thermo.thermal_properties(einstein_dos(nu_e), n, temps)
    x = thermo.HC_OVER_KB * nu_e / temps
    cv = 3 * n * R * x**2 * np.exp(x) / np.expm1(x) ** 2
    s = 3 * n * R * (x / np.expm1(x) - np.log(-np.expm1(-x)))
    zpe = 3 * n * thermo.CM_TO_KJ_PER_MOL * nu_e / 2
    f = zpe + 3 * n * R / 1e3 * temps * np.log(-np.expm1(-x))
    assert np.allclose(p.cv[0], cv, rtol=1e-12)
    assert np.allclose(p.s_vib[0], s, rtol=1e-12)
    assert p.zpe[0] == pytest.approx(zpe, rel=1e-12)
    assert np.allclose(p.f_vib[0], f, rtol=1e-10)


@pytest.mark.parametrize("t_over_theta", [0.1, 0.25, 0.5, 1.0, 2.0])
def test_debye_dos_matches_continuum_debye_function(t_over_theta):
    """A fine-grid Debye DOS reproduces the Debye function (trapezoid error shrinks with the step)."""
    nu_d = 600.0
    freq = np.linspace(0.0, 700.0, 7001)
    theta = thermo.HC_OVER_KB * nu_d
    p = thermo.thermal_properties(debye_dos(nu_d, freq), 1, [t_over_theta * theta], freq_cm=freq)
    assert p.cv[0, 0] / (3 * R) == pytest.approx(debye_cv_closed_form(t_over_theta), rel=2e-3)


def test_second_moment_debye_temperature_of_debye_dos():
    nu_d = 600.0
    freq = np.linspace(0.0, 700.0, 7001)
    theta = thermo.second_moment_debye_temperature(debye_dos(nu_d, freq), freq)[0]
    assert theta == pytest.approx(thermo.HC_OVER_KB * nu_d, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    dos=st.lists(st.floats(0, 1), min_size=N_BINS, max_size=N_BINS).filter(lambda v: sum(v[16:]) > 1e-3),
    n=st.integers(1, 20),
)
def test_dulong_petit_and_zero_temperature_limits(dos, n):
    """High T -> 3NR (exactly, when g(0) = 0, see module docstring); T -> 0 -> 0; C_V never exceeds 3NR."""
    g = np.array(dos)
    g[FREQ_CM == 0] = 0.0
    p = thermo.thermal_properties(g, n, [0.5, 300.0, 1e6])
    assert p.cv[0, 0] < 1e-6 * 3 * n * R
    assert p.cv[0, 2] == pytest.approx(3 * n * R, rel=1e-5)
    assert np.all(p.cv <= 3 * n * R * (1 + 1e-12))
    assert np.all(p.s_vib >= 0)


def test_scale_invariance_and_order_independence():
    rng = np.random.default_rng(1)
    dos = rng.random((4, N_BINS))
    n = np.array([1, 2, 3, 4])
    a = thermo.thermal_properties(dos, n, [100, 300])
    b = thermo.thermal_properties(dos[::-1] * 7.5, n[::-1], [100, 300])
    assert np.allclose(a.cv, b.cv[::-1])
    assert np.allclose(a.s_vib, b.s_vib[::-1])


def test_entropy_is_consistent_with_free_energy():
    """S = -dF/dT (finite difference of the harmonic free energy)."""
    rng = np.random.default_rng(2)
    dos = rng.random((3, N_BINS))
    t, dt = 300.0, 1e-3
    p = thermo.thermal_properties(dos, 2, [t - dt, t, t + dt])
    s_from_f = -(p.f_vib[:, 2] - p.f_vib[:, 0]) / (2 * dt) * 1e3
    assert np.allclose(s_from_f, p.s_vib[:, 1], rtol=1e-5)


def test_stability_rule():
    g = np.zeros(N_BINS)
    g[FREQ_CM == -100] = 1.0
    g[FREQ_CM == 200] = 9.0
    assert thermo.negative_fraction(g)[0] == pytest.approx(0.1)
    assert thermo.is_stable(g, 0.1)[0]
    assert not thermo.is_stable(g, 0.09)[0]


def test_gravimetric_units():
    p = thermo.thermal_properties(einstein_dos(300.0), 2, [300.0])
    grav = p.gravimetric(np.array([50.0]))
    assert grav.cv[0, 0] == pytest.approx(p.cv[0, 0] * 20.0)  # 1 kg = 20 mol of 50 g/mol


def _leaderboard_file(name: str) -> Path:
    import jarvis_leaderboard

    return Path(jarvis_leaderboard.__file__).parent / "benchmarks" / "AI" / name


def _read_zip_json(path: Path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(z.namelist()[0]))


@pytest.mark.shared
def test_reproduces_leaderboard_labels(shared_zip):
    """C_V(300 K) of the leaderboard DFT spectra vs dft_3d_ph_heat_capacity, N from the shared structures."""
    spectra = _read_zip_json(_leaderboard_file("Spectra/edos_pdos_ph_dos.json.zip"))
    labels = _read_zip_json(_leaderboard_file("SinglePropertyPrediction/dft_3d_ph_heat_capacity.json.zip"))
    dos = {j: v for split in spectra.values() for j, v in split.items()}
    cv_label = {j: v for split in labels.values() for j, v in split.items()}
    ids, n_fu, rows = [], [], []
    for rec in _read_zip_json(shared_zip):
        jid = rec["jid"]
        if jid in cv_label and jid in dos and jid not in ids:
            counts = Counter(rec["atoms"]["elements"])
            ids.append(jid)
            n_fu.append(sum(counts.values()) // reduce(gcd, counts.values()))
            rows.append(np.array(dos[jid].split(";"), dtype=float))
    assert len(ids) > 1000
    cv = thermo.thermal_properties(np.array(rows), np.array(n_fu), [300.0]).cv[:, 0]
    rel = np.abs(cv / np.array([cv_label[j] for j in ids]) - 1)
    print(
        f"C_V(300 K) vs leaderboard labels: N={len(ids)} median |rel err|={np.median(rel):.2e} max={rel.max():.2e}"
    )
    assert np.median(rel) <= 0.005
    assert rel.max() < 1e-4  # the convention is exact up to physical constants
