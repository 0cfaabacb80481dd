"""Area-conserving re-binning of a phonon DOS onto the paper's 66-point grid, and max-normalisation.

Hand-written rather than ``numpy.interp`` of the values: point interpolation does not conserve the integral when
the source grid is finer (5 cm^-1) or offset, and the thermal properties are integrals of the DOS.
"""

from __future__ import annotations

import numpy as np

from pipeline.grid import FREQ_CM, THZ_TO_CM

UNITS = ("cm-1", "THz")


def to_cm(frequencies: np.ndarray, values: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies in cm^-1 and the density per cm^-1 (the area is unit-independent)."""
    if unit == "cm-1":
        return frequencies, values
    if unit == "THz":
        return frequencies * THZ_TO_CM, values / THZ_TO_CM
    raise ValueError(f"unknown frequency unit '{unit}' (expected one of {UNITS})")


def bin_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of bins centred on (possibly non-uniform, increasing) ``centres``: midpoints, ends mirrored."""
    mids = 0.5 * (centres[1:] + centres[:-1])
    first = centres[0] - (mids[0] - centres[0])
    last = centres[-1] + (centres[-1] - mids[-1])
    return np.concatenate([[first], mids, [last]])


def rebin(
    frequencies: np.ndarray,
    values: np.ndarray,
    unit: str = "cm-1",
    target_centres: np.ndarray = FREQ_CM,
) -> np.ndarray:
    """Re-bin a DOS sampled at ``frequencies`` (bin centres) onto ``target_centres``, conserving area.

    Each source sample is a histogram bin of uniform density; the cumulative area is interpolated linearly at the
    target bin edges and differenced. Area outside the target range is dropped (:func:`clipped_area_fractions`
    says how much). On an identical grid this is the identity (to rounding).
    """
    src_edges, cumulative = _cumulative_area(frequencies, values, unit)
    tgt_edges = bin_edges(np.asarray(target_centres, dtype=np.float64))
    cum_at = np.interp(tgt_edges, src_edges, cumulative, left=0.0, right=cumulative[-1])
    return np.diff(cum_at) / np.diff(tgt_edges)


def clipped_area_fractions(
    frequencies: np.ndarray,
    values: np.ndarray,
    unit: str = "cm-1",
    target_centres: np.ndarray = FREQ_CM,
) -> tuple[float, float]:
    """(below, above): the fractions of the spectrum's total area that :func:`rebin` drops because they lie
    below the lower edge of the target grid's first bin or above the upper edge of its last bin (-310 and
    1010 cm^-1 for the paper's grid, whose bin centres run -300..1000), with the same histogram convention
    as :func:`rebin`. Both are in [0, 1]; 0 when the spectrum lies inside the grid.
    """
    src_edges, cumulative = _cumulative_area(frequencies, values, unit)
    total = float(cumulative[-1])
    if not total > 0:
        raise ValueError(f"DOS has no positive area ({total:.3g})")
    lo, hi = bin_edges(np.asarray(target_centres, dtype=np.float64))[[0, -1]]
    cum_lo, cum_hi = np.interp([lo, hi], src_edges, cumulative, left=0.0, right=total)
    return float(np.clip(cum_lo / total, 0.0, 1.0)), float(np.clip((total - cum_hi) / total, 0.0, 1.0))


def _cumulative_area(frequencies: np.ndarray, values: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Source bin edges (cm^-1) and the cumulative area at each edge (0 at the first)."""
    f = np.asarray(frequencies, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if f.ndim != 1 or f.shape != v.shape or f.size < 2:
        raise ValueError(
            f"frequencies {f.shape} and values {v.shape} must be equal 1-d arrays of length >= 2"
        )
    if not np.all(np.diff(f) > 0):
        raise ValueError("frequencies must be strictly increasing")
    f, v = to_cm(f, v, unit)
    src_edges = bin_edges(f)
    return src_edges, np.concatenate([[0.0], np.cumsum(v * np.diff(src_edges))])


def area(values: np.ndarray, centres: np.ndarray = FREQ_CM) -> float:
    """Histogram area of a DOS given at bin ``centres``."""
    return float(np.sum(np.asarray(values) * np.diff(bin_edges(np.asarray(centres, dtype=np.float64)))))


def max_normalise(values: np.ndarray) -> tuple[np.ndarray, float]:
    """(values / max, max). The original is ``normalised * scale``."""
    scale = float(np.max(values))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("DOS maximum is not positive")
    return values / scale, scale


def dos_problem(values: np.ndarray, rel_tol: float = 1e-6) -> str | None:
    """Why a DOS cannot be used (NaN, negative, all zero), or None when it is fine."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return "empty DOS"
    if not np.isfinite(v).all():
        return "DOS contains NaN or infinite values"
    peak = float(np.max(np.abs(v)))
    if peak == 0.0:
        return "DOS is all zero"
    if float(v.min()) < -rel_tol * peak:
        return f"DOS has negative values (min {v.min():.3g}, max {v.max():.3g})"
    return None
