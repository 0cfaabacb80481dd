"""Shared fixtures. ``shared_data``: the real JARVIS subset beside the repo (../shared/data), read at run time and
never copied into the repo; tests needing it are skipped where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PHONON_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_ZIP = SHARED_DATA / "jarvis_dft3d_subset.json.zip"


@pytest.fixture(scope="session")
def shared_zip() -> Path:
    if not SHARED_ZIP.exists():
        pytest.skip(f"real JARVIS subset not found at {SHARED_ZIP}")
    return SHARED_ZIP
