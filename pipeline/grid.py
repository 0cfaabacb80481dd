"""The paper's DOS grid: 66 points from -300 to 1000 cm^-1, step 20 (bin centres, each bin 20 cm^-1 wide)."""

from __future__ import annotations

import numpy as np

GRID_MIN_CM = -300.0
GRID_MAX_CM = 1000.0
GRID_STEP_CM = 20.0
N_BINS = 66

#: 1 THz in cm^-1 (c = 299 792 458 m/s).
THZ_TO_CM = 33.35640951981521


def grid_cm(
    min_cm: float = GRID_MIN_CM, max_cm: float = GRID_MAX_CM, step_cm: float = GRID_STEP_CM
) -> np.ndarray:
    """Bin centres in cm^-1 (inclusive of both ends)."""
    n = int(round((max_cm - min_cm) / step_cm)) + 1
    return min_cm + step_cm * np.arange(n, dtype=np.float64)


FREQ_CM = grid_cm()
assert FREQ_CM.size == N_BINS
