"""dos stage: re-bin spectra to the 66-point grid, join with structures, add metadata, split.

Inputs: results/fetch/structures.parquet and dos_raw.parquet. Outputs (schema ``pipeline.schemas.MATERIALS``):
- dataset.parquet: labelled materials (split train/val/test),
- pool.parquet: structures without a DOS (split 'pool', dos null), the inference pool,
- rejects.parquet: every structure or spectrum that was not used, with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.io import write_parquet, write_rejects
from pipeline.rebin import dos_problem, max_normalise, rebin
from pipeline.schemas import MATERIALS

log = logging.getLogger("pipeline.dos")
SPLITS = ("train", "val", "test")
MIN_DISTANCE_A = 0.5  # closer atoms mean a broken structure (duplicated site), not a crystal


# --------------------------------------------------------------------------------- metadata --------------------
def structure_metadata(lattice_mat: Any, frac_coords: Any, elements: Any) -> dict[str, Any]:
    """Formula, sizes and symmetry of one structure (pymatgen + spglib). Raises ValueError when unusable."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.core.periodic_table import Element
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    unknown = sorted({str(e) for e in elements if not Element.is_valid_symbol(str(e))})
    if unknown:
        raise ValueError(f"unknown element symbol(s) {unknown}")
    lattice = Lattice(np.asarray([np.asarray(r, dtype=float) for r in lattice_mat]))
    if not lattice.volume > 1e-6:
        raise ValueError(f"cell volume {lattice.volume:.3g} A^3 is not positive")
    try:
        s = Structure(lattice, list(elements), np.asarray([np.asarray(c, dtype=float) for c in frac_coords]))
    except (ValueError, KeyError) as exc:  # unknown element symbols, shape errors
        raise ValueError(f"pymatgen cannot build the structure: {exc}") from exc
    if len(s) > 1:
        dmin = float(np.min(s.distance_matrix[np.triu_indices(len(s), 1)]))
        if dmin < MIN_DISTANCE_A:
            raise ValueError(f"atoms overlap (closest pair {dmin:.3f} A < {MIN_DISTANCE_A} A)")
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
def random_split(ids: pd.Series, fractions: list[float], seed: int) -> pd.Series:
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


def assign_split(df: pd.DataFrame, method: str, fractions: list[float], seed: int) -> pd.Series:
    if method == "official":
        return df["official_split"]
    if method == "random":
        return random_split(df["jid"], fractions, seed)
    if method == "leakage_aware":
        from pipeline.leakage import leakage_aware_split

        return leakage_aware_split(df, fractions, seed)
    raise ValueError(f"unknown split method '{method}'")


# --------------------------------------------------------------------------------- stage -----------------------
def _dedupe(df: pd.DataFrame, what: str, rejects: list[tuple[str, str, str]]) -> pd.DataFrame:
    dup = df["jid"].duplicated(keep="first")
    for jid in df.loc[dup, "jid"]:
        rejects.append((jid, "dos", f"duplicate id in {what} (first occurrence kept)"))
    return df.loc[~dup]


def rebin_spectra(dos_raw: pd.DataFrame, rejects: list[tuple[str, str, str]]) -> pd.DataFrame:
    rows = []
    for rec in tqdm(
        dos_raw.itertuples(index=False), total=len(dos_raw), desc="re-bin", unit="dos", mininterval=2
    ):
        values = np.asarray(rec.values, dtype=np.float64)
        problem = dos_problem(values)
        if problem is None:
            try:
                binned = rebin(np.asarray(rec.frequencies, dtype=np.float64), values, rec.unit)
                problem = dos_problem(binned)
                if problem is None:
                    normalised, scale = max_normalise(binned)
            except ValueError as exc:
                problem = str(exc)
        if problem is not None:
            rejects.append((rec.jid, "dos", problem))
            continue
        rows.append(
            {
                "jid": rec.jid,
                "dos": normalised.astype(np.float32),
                "dos_scale": scale,
                "official_split": rec.official_split,
            }
        )
    return pd.DataFrame(rows, columns=["jid", "dos", "dos_scale", "official_split"])


def add_metadata(structures: pd.DataFrame, rejects: list[tuple[str, str, str]]) -> pd.DataFrame:
    meta_rows = []
    for rec in tqdm(
        structures.itertuples(index=False),
        total=len(structures),
        desc="metadata",
        unit="struct",
        mininterval=2,
    ):
        try:
            meta_rows.append(
                {"jid": rec.jid, **structure_metadata(rec.lattice_mat, rec.frac_coords, rec.elements)}
            )
        except ValueError as exc:
            rejects.append((rec.jid, "dos", f"unusable structure: {exc}"))
    meta = pd.DataFrame(meta_rows)
    if meta.empty:
        return structures.iloc[0:0]
    return structures.merge(meta, on="jid", how="inner")


def build(
    structures: pd.DataFrame,
    dos_raw: pd.DataFrame,
    method: str = "official",
    fractions: list[float] | None = None,
    seed: int = 42,
) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str, str]]]:
    """(labelled, pool, rejects) from the fetch tables. Every input id ends in exactly one of the three."""
    fractions = fractions or [0.8, 0.1, 0.1]
    rejects: list[tuple[str, str, str]] = []
    structures = _dedupe(structures, "structures", rejects)
    dos_raw = _dedupe(dos_raw, "spectra", rejects)
    spectra = rebin_spectra(dos_raw, rejects)
    materials = add_metadata(structures, rejects)

    with_structure = set(structures["jid"])
    for jid in sorted(set(spectra["jid"]) - with_structure):
        rejects.append((jid, "dos", "spectrum has no structure in the structure source"))
    labelled = materials.merge(spectra, on="jid", how="inner")
    if method == "official":
        no_split = labelled["official_split"].isna()
        for jid in labelled.loc[no_split, "jid"]:
            rejects.append(
                (jid, "dos", "not in the official jarvis-leaderboard split (use split.method: random)")
            )
        labelled = labelled.loc[~no_split]
    labelled = labelled.assign(split=assign_split(labelled, method, fractions, seed).to_numpy())

    # structures whose spectrum was rejected are not pool material: they already have a rejects row
    rejected_spectra = set(dos_raw["jid"]) - set(spectra["jid"])
    pool = materials.loc[~materials["jid"].isin(set(spectra["jid"]) | rejected_spectra)]
    pool = pool.assign(split="pool", dos=None, dos_scale=np.nan)
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
    fetch_dir: str | Path, out_dir: str | Path, method: str, fractions: list[float], seed: int
) -> dict[str, Any]:
    fetch_dir, out = Path(fetch_dir), Path(out_dir)
    structures = pq.read_table(fetch_dir / "structures.parquet").to_pandas()
    dos_raw = pq.read_table(fetch_dir / "dos_raw.parquet").to_pandas()
    labelled, pool, rejects = build(structures, dos_raw, method, fractions, seed)
    write_parquet(_to_table(labelled), out / "dataset.parquet", MATERIALS)
    write_parquet(_to_table(pool), out / "pool.parquet", MATERIALS)
    write_rejects(rejects, out / "rejects.parquet")
    counts = {
        "labelled": len(labelled),
        **{s: int((labelled["split"] == s).sum()) for s in SPLITS},
        "pool": len(pool),
        "rejects": len(rejects),
    }
    log.info("dos: %s", counts)
    return counts


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import SchemaArgumentParser, schema_option

    p = SchemaArgumentParser(
        prog="python -m pipeline dos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--fetch-dir", default="results/fetch", help="directory with structures.parquet, dos_raw.parquet"
    )
    p.add_argument("--out-dir", default="results/dos")
    schema_option(p, "--split-method", key="split.method")
    schema_option(p, "--fractions", key="split.fractions", metavar=("TRAIN", "VAL", "TEST"))
    schema_option(p, "--seed", key="split.seed")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(run(a.fetch_dir, a.out_dir, a.split_method, a.fractions, a.seed)))
    return 0
