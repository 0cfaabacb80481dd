"""The properties stage's library: spectra -> C_V, S_vib, F_vib, ZPE, stability, Debye temperature, isotope
scattering. The command line is ``pipeline.stages.properties``.

One output row per (material, source): 'dft' for every labelled material of the dataset, 'pred' for every
predicted spectrum given (material metadata looked up in the dataset and pool). Without predictions only DFT rows
are written. Conventions (3N rescaling, integration) are documented in :mod:`pipeline.physics.thermo`; the schema is
``pipeline.schemas.PROPERTIES``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from pipeline.config import ConfigNode
from pipeline.data.leakage import stack_spectra
from pipeline.grid import FREQ_CM
from pipeline.io import write_parquet, write_rejects
from pipeline.physics import thermo
from pipeline.physics.debye import debye_temperatures
from pipeline.physics.isotopes import isotope_scattering_rate_ghz, mass_variances
from pipeline.schemas import PROPERTIES

STAGE = "properties"
META_COLUMNS = [
    "jid",
    "split",
    "n_atoms_per_fu",
    "formula_mass",
    "volume_per_atom",
    "elements",
    "elastic_tensor",
    "bulk_modulus_gpa",
    "shear_modulus_gpa",
]


@dataclass(frozen=True)
class PropertiesSettings(ConfigNode):
    """The ``properties`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml).
    ``use_predictions`` is the workflow's switch (which spectra the rule hands the stage); the stage computes the
    properties of the prediction files it is given."""

    KEY: ClassVar[str] = "properties"
    temperatures: tuple[float, ...]
    unstable_fraction: float
    head_unstable_fraction: float
    use_predictions: bool


def _optional(meta: pd.DataFrame, column: str) -> list | None:
    """A column of a materials table that older tables may lack (None then)."""
    return list(meta[column]) if column in meta else None


def _valid_rows(
    spectra: np.ndarray, meta: pd.DataFrame, source: str, rejects: list[tuple[str, str, str]]
) -> np.ndarray:
    """Boolean mask of rows whose properties can be computed; the others get a rejects row naming the reason."""
    ok = np.ones(len(meta), dtype=bool)
    n = pd.to_numeric(meta["n_atoms_per_fu"], errors="coerce").to_numpy(dtype=float)
    finite = np.all(np.isfinite(spectra), axis=1)
    total = np.where(finite, np.nan_to_num(spectra).sum(axis=1), 0.0)
    negative_values = np.any(np.nan_to_num(spectra) < 0, axis=1)
    for i, jid in enumerate(meta["jid"]):
        reason = None
        if not finite[i]:
            reason = f"{source} spectrum missing or not 66 finite values"
        elif not (np.isfinite(n[i]) and n[i] >= 1):
            reason = f"atoms per formula unit missing or invalid ({meta['n_atoms_per_fu'].iloc[i]!r})"
        elif negative_values[i]:
            reason = f"{source} spectrum has negative DOS values"
        elif total[i] <= 0:
            reason = f"{source} spectrum is all zeros"
        if reason is not None:
            ok[i] = False
            rejects.append((str(jid), STAGE, reason))
    return ok


def compute_properties(
    spectra: np.ndarray,
    meta: pd.DataFrame,
    temperatures: Sequence[float],
    unstable_fraction: float,
    source: str,
    model_id: pd.Series | None = None,
    head: np.ndarray | None = None,
    head_unstable_fraction: float | None = None,
) -> pd.DataFrame:
    """Properties of valid rows (spectra: n x 66 aligned with meta); returns a frame with PROPERTIES columns.

    ``head``: a stability head's negative fractions (aligned with meta; NaN where a row has none): those rows are
    called stable when the head's value is at most ``head_unstable_fraction``, the others from their spectrum."""
    temps = np.asarray(sorted(set(map(float, temperatures))), dtype=np.float64)
    # Spectra with no weight above 0 cm^-1 (entirely imaginary modes) keep their row, for the stability statistics,
    # but have no thermal properties: NaN rather than a meaningless rescaling of the omega = 0 point.
    no_positive = ~(spectra[:, FREQ_CM > 0].sum(axis=1) > 0)
    n = meta["n_atoms_per_fu"].to_numpy(dtype=np.float64)
    mass = pd.to_numeric(meta["formula_mass"], errors="coerce").to_numpy(dtype=np.float64)
    vol = pd.to_numeric(meta["volume_per_atom"], errors="coerce").to_numpy(dtype=np.float64)

    props = thermo.thermal_properties(spectra, n, temps)
    at300 = thermo.thermal_properties(spectra, n, [300.0])
    per_kg = 1e3 / np.where(mass > 0, mass, np.nan)
    theta, theta_source = debye_temperatures(
        spectra, list(meta["elastic_tensor"]), mass, n, vol, _optional(meta, "bulk_modulus_gpa"),
        _optional(meta, "shear_modulus_gpa"),
    )  # fmt: skip
    gamma, iso_flag = mass_variances([list(e) if e is not None else [] for e in meta["elements"]])
    head_values = np.full(len(meta), np.nan) if head is None else np.asarray(head, dtype=np.float64)
    has_head = np.isfinite(head_values)
    if has_head.any() and head_unstable_fraction is None:
        raise ValueError("stability head values given without head_unstable_fraction")
    with np.errstate(invalid="ignore"):  # NaN head values compare False; those rows take the spectrum's call
        stable = np.where(
            has_head,
            head_values <= (head_unstable_fraction or 0.0),
            thermo.is_stable(spectra, unstable_fraction),
        )
    table = pd.DataFrame(
        {
            "jid": meta["jid"].to_numpy(),
            "split": meta["split"].to_numpy() if "split" in meta else None,
            "source": source,
            "model_id": model_id.to_numpy() if model_id is not None else None,
            "n_atoms_per_fu": n.astype(np.int32),
            "formula_mass": mass,
            "temperatures_k": [temps.tolist()] * len(meta),
            "cv": list(props.cv),
            "s_vib": list(props.s_vib),
            "f_vib": list(props.f_vib),
            "zpe": props.zpe,
            "cv_300k": at300.cv[:, 0],
            "s_vib_300k": at300.s_vib[:, 0],
            "cv_300k_gravimetric": at300.cv[:, 0] * per_kg,
            "s_vib_300k_gravimetric": at300.s_vib[:, 0] * per_kg,
            "negative_fraction": thermo.negative_fraction(spectra),
            "stable": stable,
            "negative_fraction_head": head_values,
            "stability_source": np.where(has_head, "head", "spectrum"),
            "debye_temperature": theta,
            "debye_source": theta_source,
            "cv_half_debye": thermo.cv_at_temperatures(spectra, n, 0.5 * theta),
            "mass_variance": gamma,
            "isotope_flag": iso_flag,
            "tau_iso_inv": isotope_scattering_rate_ghz(spectra, n, gamma),
        }
    )
    if no_positive.any():
        nan_list = [np.full(len(temps), np.nan)]
        for col in ("cv", "s_vib", "f_vib"):
            table[col] = [nan_list[0] if bad else v for v, bad in zip(table[col], no_positive, strict=True)]
        scalar_cols = ["zpe", "cv_300k", "s_vib_300k", "cv_300k_gravimetric", "s_vib_300k_gravimetric"]
        scalar_cols += ["debye_temperature", "cv_half_debye", "tau_iso_inv"]
        table.loc[no_positive, scalar_cols] = np.nan
    return table


def _read_materials(paths: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths if p]
    if not frames:
        raise SystemExit("properties: no material table given (--dataset)")
    df = pd.concat(frames, ignore_index=True)
    missing = [c for c in META_COLUMNS if c not in df]
    if missing:
        raise SystemExit(f"properties: material tables lack columns {missing}")
    return df


def run(
    dataset: str,
    pool: str | None,
    predictions: Sequence[str],
    out: str,
    rejects_path: str,
    settings: PropertiesSettings,
) -> pd.DataFrame:
    """The stage: properties of every labelled DFT spectrum of ``dataset`` and of every predicted spectrum of the
    ``predictions`` files (metadata from ``dataset`` and ``pool``) on ``settings.temperatures`` -> ``out``, refused
    spectra -> ``rejects_path``; returns the table written."""
    temperatures, unstable_fraction = settings.temperatures, settings.unstable_fraction
    rejects: list[tuple[str, str, str]] = []
    labelled = pd.read_parquet(dataset)
    materials = _read_materials([dataset] + ([pool] if pool else []))
    materials = materials.drop_duplicates("jid", keep="first")
    parts = []

    dft = labelled.reset_index(drop=True)  # every labelled row: missing spectra become rejects
    spectra = stack_spectra(list(dft["dos"])).astype(np.float64)
    ok = _valid_rows(spectra, dft, "DFT", rejects)
    print(f"properties: {ok.sum()} DFT spectra ({(~ok).sum()} rejected)", file=sys.stderr)
    parts.append(
        compute_properties(
            spectra[ok], dft[ok].reset_index(drop=True), temperatures, unstable_fraction, "dft"
        )
    )

    for path in predictions:
        pred = pd.read_parquet(path)
        if "negative_fraction_head" not in pred:  # predictions written before the column existed
            pred["negative_fraction_head"] = np.nan
        meta = pred[["jid", "dos_pred", "model_id", "split", "negative_fraction_head"]].merge(
            materials[[c for c in META_COLUMNS if c != "split"]], on="jid", how="left", indicator=True
        )
        unknown = meta["_merge"] == "left_only"
        for jid in meta.loc[unknown, "jid"]:
            rejects.append((str(jid), STAGE, f"prediction in {Path(path).name} has no material metadata"))
        meta = meta[~unknown].drop(columns="_merge").reset_index(drop=True)
        spectra = stack_spectra(list(meta["dos_pred"])).astype(np.float64)
        ok = _valid_rows(spectra, meta, "predicted", rejects)
        print(
            f"properties: {ok.sum()} predicted spectra from {path} ({(~ok).sum()} rejected)", file=sys.stderr
        )
        kept = meta[ok].reset_index(drop=True)
        parts.append(
            compute_properties(
                spectra[ok],
                kept,
                temperatures,
                unstable_fraction,
                "pred",
                kept["model_id"],
                head=pd.to_numeric(kept["negative_fraction_head"]).to_numpy(dtype=np.float64),
                head_unstable_fraction=settings.head_unstable_fraction,
            )
        )

    table = pd.concat(parts, ignore_index=True).sort_values(["source", "jid"], kind="stable")
    write_parquet(table.reset_index(drop=True), out, PROPERTIES)
    write_rejects(rejects, rejects_path)
    return table
