"""Voigt bulk and shear moduli of JARVIS-DFT materials from the ``jarvis-leaderboard`` package.

The leaderboard ships ``dft_3d_bulk_modulus_kv`` and ``dft_3d_shear_modulus_gv`` (JARVIS OptB88vdW elastic
constants, Voigt averages K_V and G_V in GPa; 19,680 ids each, in train/val/test splits that have nothing to do
with the DOS split). With the mass density they give sound velocities, and so the Debye and Born-von Karman
baselines and an elastic Debye temperature (``pipeline.physics.debye``) for materials whose record carries no elastic
tensor, which is every structure of the offline subset. Figshare ``dft_3d`` records carry the same two numbers as
``bulk_modulus_kv`` / ``shear_modulus_gv``; the fetch stage keeps those, and the dos stage fills the rest from here.
"""

from __future__ import annotations

import json
import math
import zipfile
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

BULK = "benchmarks/AI/SinglePropertyPrediction/dft_3d_bulk_modulus_kv.json.zip"
SHEAR = "benchmarks/AI/SinglePropertyPrediction/dft_3d_shear_modulus_gv.json.zip"


def modulus(value: Any) -> float | None:
    """A usable modulus in GPa (finite and > 0), else None ('na' strings, negatives and zeros of failed fits)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _read(member: str) -> dict[str, float]:
    path = resources.files("jarvis_leaderboard").joinpath(member)
    with path.open("rb") as fh, zipfile.ZipFile(fh) as zf:
        data = json.loads(zf.read(zf.namelist()[0]))
    out: dict[str, float] = {}
    for split in data.values():  # {"train": {jid: value}, "val": ..., "test": ...}
        for jid, value in split.items():
            if (v := modulus(value)) is not None:
                out[str(jid)] = v
    return out


@lru_cache(maxsize=1)
def leaderboard_moduli() -> pd.DataFrame:
    """jid -> ``bulk_modulus_gpa`` (K_V), ``shear_modulus_gpa`` (G_V), for ids with both usable values."""
    bulk, shear = _read(BULK), _read(SHEAR)
    ids = sorted(set(bulk) & set(shear))
    return pd.DataFrame(
        {
            "bulk_modulus_gpa": [bulk[j] for j in ids],
            "shear_modulus_gpa": [shear[j] for j in ids],
        },
        index=pd.Index(ids, name="jid"),
    )


def fill_moduli(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (with ``jid``) with ``bulk_modulus_gpa`` / ``shear_modulus_gpa`` / ``moduli_source``: the record's
    values where it had both ('record'), else the leaderboard's ('leaderboard'), else null."""
    out = df.copy()
    for col in ("bulk_modulus_gpa", "shear_modulus_gpa"):
        if col not in out:
            out[col] = None
    own = out["bulk_modulus_gpa"].notna() & out["shear_modulus_gpa"].notna()
    table = leaderboard_moduli()
    lb = table.reindex(out["jid"].astype(str))
    have_lb = (~own.to_numpy()) & lb["bulk_modulus_gpa"].notna().to_numpy()
    for col in ("bulk_modulus_gpa", "shear_modulus_gpa"):
        values = np.array(out[col].astype(object).to_numpy(), dtype=object)  # a writable copy
        values[have_lb] = lb[col].to_numpy()[have_lb]
        values[~(own.to_numpy() | have_lb)] = None
        out[col] = values
    out["moduli_source"] = [
        "record" if o else ("leaderboard" if h else None)
        for o, h in zip(own.to_numpy(), have_lb, strict=True)
    ]
    return out
