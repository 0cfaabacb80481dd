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
    target bin edges and differenced. Area outside the target range is dropped. On an identical grid this is the
    identity (to rounding).
    """
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
    cumulative = np.concatenate([[0.0], np.cumsum(v * np.diff(src_edges))])
    tgt_edges = bin_edges(np.asarray(target_centres, dtype=np.float64))
    cum_at = np.interp(tgt_edges, src_edges, cumulative, left=0.0, right=cumulative[-1])
    return np.diff(cum_at) / np.diff(tgt_edges)


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
