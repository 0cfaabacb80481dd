"""The dos stage's library: re-bin spectra to the 66-point grid, join with structures, add metadata, split. The
command line is ``pipeline.stages.dos``.

Inputs: results/fetch/structures.parquet and dos_raw.parquet. Outputs (schema ``pipeline.schemas.MATERIALS``):
- dataset.parquet: labelled materials (split train/val/test),
- pool.parquet: structures without a DOS (split 'pool', dos null), the inference pool,
- rejects.parquet: every structure or spectrum that was not used, with the reason.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.config import ConfigNode
from pipeline.data.moduli import fill_moduli
from pipeline.data.rebin import clipped_area_fractions, dos_problem, max_normalise, rebin
from pipeline.data.structures import validate_structure
from pipeline.io import write_parquet, write_rejects
from pipeline.schemas import MATERIALS

log = logging.getLogger("pipeline.data.dos")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitSettings(ConfigNode):
    """The ``split`` config section: how labelled materials are split (meaning, defaults and bounds:
    pipeline/config.schema.yaml; the fractions sum to 1)."""

    KEY: ClassVar[str] = "split"
    method: str
    seed: int
    fractions: tuple[float, ...]


# --------------------------------------------------------------------------------- metadata --------------------
def structure_metadata(
    lattice_mat: Any, frac_coords: Any, elements: Any, min_distance: float
) -> dict[str, Any]:
    """Formula, sizes and symmetry of one structure (pymatgen + spglib). Raises ValueError (a
    :class:`pipeline.data.structures.StructureError`) when :func:`pipeline.data.structures.validate_structure` refuses it
    (atoms closer than ``min_distance``, ``featurize.min_distance``, overlap)."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    checked = validate_structure(lattice_mat, frac_coords, elements, min_distance)
    try:
        s = Structure(Lattice(checked.lattice), checked.elements, checked.frac_coords)
    except (ValueError, KeyError) as exc:  # not expected after validation; kept as a reason, not a traceback
        raise ValueError(f"pymatgen cannot build the structure: {exc}") from exc
    reduced, factor = s.composition.get_reduced_composition_and_factor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sga = SpacegroupAnalyzer(s, symprec=0.1)
            sg, system = int(sga.get_space_group_number()), str(sga.get_crystal_system())
        except Exception:  # spglib gives up on some distorted cells: keep the material, symmetry unknown
            sg, system = None, None
    return {
        "formula": reduced.reduced_formula,
        "n_atoms": len(s),
        "n_atoms_per_fu": int(round(reduced.num_atoms)),
        "formula_mass": float(reduced.weight),
        "volume_per_atom": float(s.volume / len(s)),
        "n_elements": len(s.composition.elements),
        "spacegroup_number": sg,
        "crystal_system": system,
    }


# --------------------------------------------------------------------------------- splits ----------------------
def random_split(ids: pd.Series, fractions: Sequence[float], seed: int) -> pd.Series:
    """Seeded 80/10/10-style split, independent of row order (ids are sorted first)."""
    frac = np.asarray(fractions, dtype=float) / float(np.sum(fractions))
    order = np.sort(ids.to_numpy())
    perm = np.random.default_rng(seed).permutation(len(order))
    n_train = int(round(frac[0] * len(order)))
    n_val = int(round(frac[1] * len(order)))
    labels = np.empty(len(order), dtype=object)
    labels[perm[:n_train]] = "train"
    labels[perm[n_train : n_train + n_val]] = "val"
    labels[perm[n_train + n_val :]] = "test"
    return pd.Series(labels, index=order).reindex(ids.to_numpy()).set_axis(ids.index)


def assign_split(df: pd.DataFrame, split: SplitSettings, duplicate_mae: float) -> pd.Series:
    """train/val/test label of every row of ``df`` by ``split.method`` (official: the ``official_split`` column;
    leakage_aware: near-duplicates are spectra within per-bin MAE ``duplicate_mae``, ``evaluate.duplicate_mae``)."""
    if split.method == "official":
        return df["official_split"]
    if split.method == "random":
        return random_split(df["jid"], split.fractions, split.seed)
    if split.method == "leakage_aware":
        from pipeline.data.leakage import leakage_aware_split

        return leakage_aware_split(df, split.fractions, split.seed, duplicate_mae)
    raise ValueError(f"unknown split method '{split.method}'")


# --------------------------------------------------------------------------------- stage -----------------------
def first_usable(
    jids: list[str], problems: list[str | None], what: str, rejects: list[tuple[str, str, str]]
) -> list[int]:
    """Positions to keep: per id, the first copy without a problem. Validation comes first, so a broken first
    copy never throws away a good later one. Appends a rejects row for every other position: its problem (single
    copies), or which copy of the duplicated id was kept and why this one was not."""
    positions: dict[str, list[int]] = {}
    for pos, jid in enumerate(jids):
        positions.setdefault(jid, []).append(pos)
    keep = []
    for jid, where in positions.items():
        usable = [p for p in where if problems[p] is None]
        kept = usable[0] if usable else None
        if kept is not None:
            keep.append(kept)
        if len(where) == 1:
            if kept is None:
                rejects.append((jid, "dos", str(problems[where[0]])))
            continue
        n, kept_copy = len(where), (where.index(kept) + 1 if kept is not None else None)
        note = f"copy {kept_copy} kept" if kept_copy else "no copy usable"
        for copy, p in enumerate(where, start=1):
            if p == kept:
                continue
            if problems[p] is not None:
                reason = f"duplicate id in {what}: copy {copy} of {n} rejected: {problems[p]} ({note})"
            else:
                reason = (
                    f"duplicate id in {what}: copy {copy} of {n} is a duplicate of copy {kept_copy} (kept)"
                )
            rejects.append((jid, "dos", reason))
    return sorted(keep)


_SPECTRA_COLUMNS = [
    "jid",
    "dos",
    "dos_scale",
    "area_below_grid_fraction",
    "area_above_grid_fraction",
    "official_split",
]


def rebin_spectra(dos_raw: pd.DataFrame, rejects: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Re-binned, max-normalised spectra with the clipped area fractions; one row per id (first usable copy)."""
    rows: list[dict[str, Any] | None] = []
    problems: list[str | None] = []
    for rec in tqdm(
        dos_raw.itertuples(index=False),
        total=len(dos_raw),
        desc="re-bin",
        unit="dos",
        mininterval=2,
        disable=None,
    ):
        row, problem = None, None
        try:
            values = np.asarray(rec.values, dtype=np.float64)
            frequencies = np.asarray(rec.frequencies, dtype=np.float64)
            problem = dos_problem(values)
            if problem is None:
                binned = rebin(frequencies, values, rec.unit)
                problem = dos_problem(binned)
                if problem is None:
                    normalised, scale = max_normalise(binned)
                    below, above = clipped_area_fractions(frequencies, values, rec.unit)
                    row = {
                        "jid": rec.jid,
                        "dos": normalised.astype(np.float32),
                        "dos_scale": scale,
                        "area_below_grid_fraction": below,
                        "area_above_grid_fraction": above,
                        "official_split": rec.official_split,
                    }
        except (TypeError, ValueError) as exc:  # unit, grid shape, non-numeric values
            problem = str(exc)
        rows.append(row)
        problems.append(problem)
    keep = first_usable(dos_raw["jid"].tolist(), problems, "spectra", rejects)
    spectra = pd.DataFrame([rows[i] for i in keep], columns=_SPECTRA_COLUMNS)
    clipped = spectra[["area_below_grid_fraction", "area_above_grid_fraction"]].gt(0).any(axis=1)
    if clipped.any():
        log.warning(
            "dos: %d spectra have area outside the grid (largest fractions below/above: %.3g / %.3g); "
            "recorded in area_{below,above}_grid_fraction",
            int(clipped.sum()),
            spectra["area_below_grid_fraction"].max(),
            spectra["area_above_grid_fraction"].max(),
        )
    return spectra


def add_metadata(
    structures: pd.DataFrame, rejects: list[tuple[str, str, str]], min_distance: float
) -> pd.DataFrame:
    """Structures with their metadata columns (:func:`structure_metadata`); one row per id (first usable copy), the
    rest rejected."""
    meta_rows: list[dict[str, Any] | None] = []
    problems: list[str | None] = []
    for rec in tqdm(
        structures.itertuples(index=False),
        total=len(structures),
        desc="metadata",
        unit="struct",
        mininterval=2,
        disable=None,  # a bar only on a terminal
    ):
        try:
            meta_rows.append(structure_metadata(rec.lattice_mat, rec.frac_coords, rec.elements, min_distance))
            problems.append(None)
        except ValueError as exc:
            meta_rows.append(None)
            problems.append(f"unusable structure: {exc}")
    keep = first_usable(structures["jid"].tolist(), problems, "structures", rejects)
    meta = pd.DataFrame([meta_rows[i] for i in keep], index=range(len(keep)))
    kept = structures.iloc[keep].reset_index(drop=True)
    return pd.concat([kept, meta], axis=1)


def build(
    structures: pd.DataFrame,
    dos_raw: pd.DataFrame,
    split: SplitSettings,
    min_distance: float,
    duplicate_mae: float,
) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str, str]]]:
    """(labelled, pool, rejects) from the fetch tables, labelled materials split by ``split`` (:func:`assign_split`
    with ``duplicate_mae``), structures with overlapping atoms (closer than ``min_distance``) rejected. Every input id
    ends in exactly one of the three."""
    rejects: list[tuple[str, str, str]] = []
    spectra = rebin_spectra(dos_raw, rejects)
    materials = fill_moduli(add_metadata(structures, rejects, min_distance))

    with_structure = set(structures["jid"])
    for jid in sorted(set(spectra["jid"]) - with_structure):
        rejects.append((jid, "dos", "spectrum has no structure in the structure source"))
    labelled = materials.merge(spectra, on="jid", how="inner")
    if split.method == "official":
        no_split = labelled["official_split"].isna()
        for jid in labelled.loc[no_split, "jid"]:
            rejects.append(
                (jid, "dos", "not in the official jarvis-leaderboard split (use split.method: random)")
            )
        labelled = labelled.loc[~no_split]
    labelled = labelled.assign(split=assign_split(labelled, split, duplicate_mae).to_numpy())

    # structures whose spectrum was rejected are not pool material: they already have a rejects row
    rejected_spectra = set(dos_raw["jid"]) - set(spectra["jid"])
    pool = materials.loc[~materials["jid"].isin(set(spectra["jid"]) | rejected_spectra)]
    pool = pool.assign(
        split="pool",
        dos=None,
        dos_scale=np.nan,
        area_below_grid_fraction=np.nan,
        area_above_grid_fraction=np.nan,
    )
    key = ["jid"]
    return (
        labelled.sort_values(key).reset_index(drop=True),
        pool.sort_values(key).reset_index(drop=True),
        rejects,
    )


def _to_table(df: pd.DataFrame) -> pa.Table:
    cols = {}
    for name in MATERIALS.names:
        values = df[name].tolist() if name in df else [None] * len(df)
        cols[name] = [None if (isinstance(v, float) and np.isnan(v)) else v for v in values]
        if name == "dos":
            cols[name] = [None if v is None else np.asarray(v, dtype=np.float32).tolist() for v in cols[name]]
    return pa.table(cols, schema=MATERIALS)


def run(
    fetch_dir: str | Path,
    out_dir: str | Path,
    split: SplitSettings,
    min_distance: float,
    duplicate_mae: float,
) -> dict[str, Any]:
    """The stage: the fetch tables in ``fetch_dir`` -> ``out_dir``/{dataset,pool,rejects}.parquet (:func:`build`
    with ``featurize.min_distance`` and ``evaluate.duplicate_mae``); returns the counts (labelled, per split, pool,
    rejects)."""
    fetch_dir, out = Path(fetch_dir), Path(out_dir)
    structures = pq.read_table(fetch_dir / "structures.parquet").to_pandas()
    dos_raw = pq.read_table(fetch_dir / "dos_raw.parquet").to_pandas()
    labelled, pool, rejects = build(structures, dos_raw, split, min_distance, duplicate_mae)
    write_parquet(_to_table(labelled), out / "dataset.parquet", MATERIALS)
    write_parquet(_to_table(pool), out / "pool.parquet", MATERIALS)
    write_rejects(rejects, out / "rejects.parquet")
    counts = {
        "labelled": len(labelled),
        **{s: int((labelled["split"] == s).sum()) for s in SPLITS},
        "pool": len(pool),
        "rejects": len(rejects),
    }
    return counts
