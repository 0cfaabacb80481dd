"""Re-binning onto the 66-point grid: identity on the paper's spectra, area conservation, units, normalisation."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.data.fetch import PDOS_ELAST_FREQ_CM, leaderboard_dos_records
from pipeline.data.rebin import area, bin_edges, clipped_area_fractions, dos_problem, max_normalise, rebin
from pipeline.grid import FREQ_CM, N_BINS, THZ_TO_CM

SHARED_DATA = Path(
    os.environ.get("PHONON_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def test_grid_is_the_papers():
    assert N_BINS == 66 and FREQ_CM[0] == -300 and FREQ_CM[-1] == 1000
    assert np.allclose(np.diff(FREQ_CM), 20)


def test_rebinning_leaderboard_spectra_is_identity():
    worst = 0.0
    for rec in leaderboard_dos_records():
        v = np.asarray(rec["values"])
        out, _ = max_normalise(rebin(np.asarray(rec["frequencies"]), v, "cm-1"))
        worst = max(worst, float(np.max(np.abs(out - v))))
    assert worst <= 1e-6


def test_thz_and_cm_inputs_agree():
    rng = np.random.default_rng(0)
    f_cm = np.arange(0.0, 800.0, 3.7)
    g_cm = rng.random(f_cm.size)
    from_cm = rebin(f_cm, g_cm, "cm-1")
    from_thz = rebin(f_cm / THZ_TO_CM, g_cm * THZ_TO_CM, "THz")  # same spectrum, density per THz
    np.testing.assert_allclose(from_thz, from_cm, rtol=1e-10, atol=1e-12)


def test_unknown_unit_is_an_error():
    with pytest.raises(ValueError, match="unit"):
        rebin(np.array([0.0, 1.0]), np.array([1.0, 1.0]), "meV")


def test_pdos_elast_grid_gaussian_peak_keeps_area_and_position():
    g = np.exp(-0.5 * ((PDOS_ELAST_FREQ_CM - 403.0) / 25.0) ** 2)
    out = rebin(PDOS_ELAST_FREQ_CM, g)
    assert area(out) == pytest.approx(area(g, PDOS_ELAST_FREQ_CM), rel=1e-12)
    assert FREQ_CM[np.argmax(out)] == 400.0


@settings(max_examples=60, deadline=None)
@given(
    values=arrays(np.float64, st.integers(2, 120), elements=st.floats(0, 1e3, allow_nan=False)),
    start=st.floats(-290, 500),
    step=st.floats(0.5, 40),
)
def test_area_is_conserved_inside_the_grid(values, start, step):
    freqs = start + step * np.arange(values.size)
    edges = bin_edges(freqs)
    if edges[-1] > bin_edges(FREQ_CM)[-1] or edges[0] < bin_edges(FREQ_CM)[0]:
        return  # part of the spectrum lies outside the grid: dropped by design
    out = rebin(freqs, values)
    assert area(out) == pytest.approx(area(values, freqs), rel=1e-9, abs=1e-9)
    assert np.all(out >= -1e-12)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, N_BINS, elements=st.floats(0, 1e6, allow_nan=False)).filter(lambda v: v.max() > 0))
def test_max_normalise_has_max_one_and_round_trips(values):
    normalised, scale = max_normalise(values)
    assert normalised.max() == pytest.approx(1.0)
    np.testing.assert_allclose(normalised * scale, values, rtol=1e-12, atol=1e-12 * values.max())


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.zeros(5), "all zero"),
        (np.array([1.0, np.nan, 2.0]), "NaN"),
        (np.array([1.0, -0.5, 2.0]), "negative"),
        (np.array([]), "empty"),
    ],
)
def test_bad_spectra_are_named(values, reason):
    assert reason in dos_problem(values)


def test_good_spectrum_has_no_problem():
    assert dos_problem(np.array([0.0, 0.3, 1.0])) is None


def test_clipped_area_fractions_of_synthetic_spectra():
    """Uniform density on 0..2000 cm^-1 (5 cm^-1 bins): 990/2000 of the area lies above the grid's top edge
    (1010 cm^-1, upper edge of the bin centred at 1000) and is exactly what rebin drops; a Gaussian at 400 cm^-1
    loses nothing; one straddling -310 cm^-1 loses its lower half."""
    freqs = np.arange(2.5, 2000.0, 5.0)
    values = np.full(freqs.size, 0.7)
    below, above = clipped_area_fractions(freqs, values)
    assert below == 0.0 and above == pytest.approx(990 / 2000, rel=1e-12)
    kept = area(rebin(freqs, values)) / area(values, freqs)
    assert kept == pytest.approx(1 - above, rel=1e-12)
    g = np.exp(-0.5 * ((PDOS_ELAST_FREQ_CM - 403.0) / 25.0) ** 2)
    assert clipped_area_fractions(PDOS_ELAST_FREQ_CM, g) == (0.0, 0.0)
    sym = np.arange(-610.0, -9.0, 2.0)  # symmetric about -310 cm^-1
    below, above = clipped_area_fractions(sym / THZ_TO_CM, np.exp(-0.5 * ((sym + 310) / 30) ** 2), "THz")
    assert below == pytest.approx(0.5, abs=1e-9) and above == 0.0


def test_clipped_area_of_an_all_zero_spectrum_is_an_error():
    with pytest.raises(ValueError, match="no positive area"):
        clipped_area_fractions(FREQ_CM, np.zeros(N_BINS))


MP_PHONON_DOS = SHARED_DATA / "mp_dfpt_phonon_dos.json.gz"


@pytest.mark.skipif(not MP_PHONON_DOS.exists(), reason=f"real MP phonon DOS not found at {MP_PHONON_DOS}")
def test_clipped_area_of_real_mp_dfpt_spectra():
    """69 real Materials Project DFPT phonon DOS (THz): the fraction above 1010 cm^-1 agrees with an independent
    trapezoid integration of the source spectrum, and where whole bands lie above the grid it counts their
    modes: BaAlSiH (12 modes) loses its one H stretching mode, RbH2N (24 modes) its six N-H modes."""
    with gzip.open(MP_PHONON_DOS) as fh:
        docs = json.load(fh)
    fractions = {}
    for doc in docs:
        f, d = (np.asarray(doc["phonon_dos"][key], dtype=float) for key in ("frequencies", "densities"))
        below, above = clipped_area_fractions(f, d, "THz")
        top = bin_edges(FREQ_CM)[-1] / THZ_TO_CM
        x = np.concatenate([[top], f[f > top]])
        reference = np.trapezoid(np.interp(x, f, d), x) / np.trapezoid(d, f) if (f > top).any() else 0.0
        assert above == pytest.approx(reference, abs=1e-5), doc["material_id"]
        assert below == 0.0, doc["material_id"]  # their soft modes lie well above -310 cm^-1
        fractions[doc["formula_pretty"]] = above
    assert fractions["BaAlSiH"] == pytest.approx(1 / 12, abs=1e-5)
    assert fractions["RbH2N"] == pytest.approx(6 / 24, abs=1e-5)
    assert sum(v > 0 for v in fractions.values()) == 4
