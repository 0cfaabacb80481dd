"""Cross-validation against Materials Project DFPT phonons (paper Fig. 10): the model's predictions, and JARVIS
DFT where a JARVIS record matches, against MP phonon documents. The command line is ``pipeline.stages.crossval``
(its help describes the sources, steps and outputs); the settings are the ``crossval`` section
(:class:`CrossvalSettings`) and the featurize/properties/predict values :func:`run` names.

- :func:`load_documents` / :func:`spectrum_row`: MP documents -> rows on the 66-bin grid (the dos stage's checks and
  re-binning, max-normalised), the unusable ones rejects rows;
- :func:`properties_at_300k`: C_V, S_vib, tau^-1 and stability at 300 K (the properties stage's code);
- :func:`predict_spectra`: the model on the MP structures (graphs with the featurize settings);
- :func:`match_jarvis`: MP id recorded by JARVIS, else reduced composition + ``StructureMatcher``;
- :func:`build_table`, :func:`summary_table`, :func:`parity_figure`, :func:`spectra_figure`: the outputs;
- :func:`run`: all of it, from files or the mp-api client.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from pipeline.config import ConfigNode
from pipeline.data.featurize import FeaturizeSettings
from pipeline.data.mp import (
    MPDocumentError,
    MPFetchError,
    document_id,
    fetch_documents,
    iter_documents,
    parse_document,
)
from pipeline.data.rebin import area, dos_problem, max_normalise, rebin
from pipeline.grid import FREQ_CM, N_BINS, THZ_TO_CM
from pipeline.io import write_parquet, write_rejects
from pipeline.schemas import CROSSVAL_MP, CROSSVAL_SUMMARY

STAGE = "crossval"
TEMPERATURE_K = 300.0
QUANTITIES = ("cv_300k", "s_vib_300k", "tau_iso_inv")
#: an MP spectrum with more than this fraction of its area outside the grid is not in the 'within_grid' subset
OFF_GRID_TOLERANCE = 0.01
#: StructureMatcher tolerances: pymatgen's defaults, with volumes scaled (different functionals)
MATCHER = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0, "primitive_cell": True, "scale": True}
COMPARISONS = {"pred_vs_mp": "pred", "jarvis_vs_mp": "jarvis"}
Reject = tuple[str, str, str]


@dataclass(frozen=True)
class CrossvalSettings(ConfigNode):
    """The ``crossval`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml). ``source``,
    ``path`` and ``model`` are the workflow's (rules/crossval.smk: which documents and model file it hands the
    stage); the stage reads ``mp_ids`` and ``endpoint`` (the mp-api source)."""

    KEY: ClassVar[str] = "crossval"
    source: str | None
    path: str
    mp_ids: tuple[str, ...]
    endpoint: str | None
    model: str | None


# ------------------------------------------------------------------------------------ MP documents ------------
def _off_grid_fraction(frequencies_thz: np.ndarray, densities: np.ndarray, binned: np.ndarray) -> float:
    """Fraction of the spectrum's area that the re-binning drops (outside the grid's outer bin edges)."""
    f_cm, g_cm = frequencies_thz * THZ_TO_CM, densities / THZ_TO_CM
    total = area(g_cm, f_cm)
    return float(np.clip(1.0 - area(binned) / total, 0.0, 1.0)) if total > 0 else float("nan")


def spectrum_row(doc: Any, min_distance: float) -> dict[str, Any]:
    """One MP document -> its row (structure, metadata, 66-bin DOS); ValueError naming the problem otherwise (as
    the dos stage checks a structure: atoms closer than ``min_distance``, ``featurize.min_distance``, overlap)."""
    from pipeline.data.dos import structure_metadata

    ph = parse_document(doc)
    try:
        meta = structure_metadata(ph.lattice_mat, ph.frac_coords, ph.elements, min_distance)
    except ValueError as exc:
        raise ValueError(f"unusable structure: {exc}") from exc
    problem = dos_problem(ph.densities)
    if problem is None:
        binned = rebin(ph.frequencies_thz, ph.densities, "THz")  # ValueError: not increasing, shapes
        problem = dos_problem(binned)
        if problem is None and not binned[FREQ_CM > 0].sum() > 0:
            problem = "DOS has no weight above 0 cm^-1 on the grid"
    if problem is not None:
        raise ValueError(f"MP DOS: {problem}")
    normalised, scale = max_normalise(binned)
    return {
        "material_id": ph.material_id,
        "formula": meta["formula"],
        "mp_formula": ph.formula,
        "n_atoms": meta["n_atoms"],
        "n_atoms_per_fu": meta["n_atoms_per_fu"],
        "formula_mass": meta["formula_mass"],
        "volume_per_atom": meta["volume_per_atom"],
        "lattice_mat": ph.lattice_mat,
        "frac_coords": ph.frac_coords,
        "elements": ph.elements,
        "elastic_tensor": None,
        "dos_mp": normalised,
        "dos_scale_mp": scale,
        "area_off_grid_mp": _off_grid_fraction(ph.frequencies_thz, ph.densities, binned),
        "source": ph.source,
    }


def load_documents(
    documents: Iterable[tuple[str, Any]], rejects: list[Reject], min_distance: float
) -> pd.DataFrame:
    """Rows of every usable document (:func:`spectrum_row`); per material id the first usable copy, the others get
    rejects rows."""
    rows: dict[str, dict[str, Any]] = {}
    for where, doc in documents:
        label = document_id(doc) or where
        try:
            if isinstance(doc, MPDocumentError):
                raise doc
            row = spectrum_row(doc, min_distance)
        except ValueError as exc:  # MPDocumentError, StructureError, rebin's shape/order errors
            rejects.append((label, STAGE, str(exc)))
            continue
        if row["material_id"] in rows:
            rejects.append((label, STAGE, f"duplicate material_id ({where}): the first usable copy is kept"))
            continue
        rows[row["material_id"]] = row
    return pd.DataFrame(list(rows.values())).sort_values("material_id", ignore_index=True) if rows else None


# ------------------------------------------------------------------------------------ properties --------------
def properties_at_300k(spectra: np.ndarray, meta: pd.DataFrame, unstable_fraction: float) -> pd.DataFrame:
    """C_V, S_vib, tau^-1 (NaN without isotope variance), stability of spectra aligned with ``meta`` rows."""
    from pipeline.physics.properties import compute_properties

    m = meta[["n_atoms_per_fu", "formula_mass", "volume_per_atom", "elements", "elastic_tensor"]].copy()
    m.insert(0, "jid", np.arange(len(meta)).astype(str))
    p = compute_properties(
        spectra.astype(np.float64), m.reset_index(drop=True), [TEMPERATURE_K], unstable_fraction, "crossval"
    )
    return pd.DataFrame(
        {
            "cv_300k": p["cv_300k"].to_numpy(float),
            "s_vib_300k": p["s_vib_300k"].to_numpy(float),
            "tau_iso_inv": np.where(p["isotope_flag"] == "ok", p["tau_iso_inv"].to_numpy(float), np.nan),
            "negative_fraction": p["negative_fraction"].to_numpy(float),
            "stable": p["stable"].to_numpy(bool),
        },
        index=meta.index,
    )


def _spectral_mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(a - b), axis=1)


# ------------------------------------------------------------------------------------ prediction --------------
def predict_spectra(
    model_path: str | Path,
    mp: pd.DataFrame,
    featurize: FeaturizeSettings,
    rejects: list[Reject],
    batch_size: int,
    device: str = "auto",
) -> tuple[np.ndarray, str]:
    """(n x 66 predicted DOS, NaN rows where no prediction, model id) for the MP structures, featurised with the
    ``featurize`` section's k, cutoff and min_distance and predicted ``batch_size`` graphs at a time."""
    from pipeline.data.graphs import build_graphs
    from pipeline.data.shards import collate
    from pipeline.nn.inference import load_model, pick_device, predict_batches
    from pipeline.nn.model import split_outputs
    from pipeline.nn.predict import file_hash

    dev = pick_device(device)
    model = load_model(model_path, dev)
    model_id = file_hash(model_path)
    graphs = build_graphs(
        list(zip(mp["lattice_mat"], mp["frac_coords"], mp["elements"], strict=True)),
        featurize.k,
        featurize.cutoff,
        featurize.min_distance,
    )
    ok = []
    for mid, g in zip(mp["material_id"], graphs, strict=True):
        if isinstance(g, Exception):
            rejects.append((mid, STAGE, f"not predicted: cannot featurise the MP structure: {g}"))
        else:
            ok.append((mid, g))
    batches = (
        collate([g for _, g in ok[i : i + batch_size]], ids=[m for m, _ in ok[i : i + batch_size]])
        for i in range(0, len(ok), batch_size)
    )
    # the float32 model, whatever predict.precision; crossval compares spectra (a stability head's column is dropped)
    ids, outputs = predict_batches(model, batches, dev, "fp32")
    preds, _ = split_outputs(outputs, model.config)
    out = np.full((len(mp), N_BINS), np.nan)
    row_of = {m: i for i, m in enumerate(mp["material_id"])}
    for mid, p in zip(ids, preds, strict=True):
        if np.isfinite(p).all() and p.min() >= 0 and p[FREQ_CM > 0].sum() > 0:
            out[row_of[mid]] = p
        else:
            rejects.append(
                (
                    mid,
                    STAGE,
                    "not predicted: the prediction is not finite, negative or has no weight above 0 cm^-1",
                )
            )
    return out, model_id


# ------------------------------------------------------------------------------------ matching ----------------
def jarvis_records(dataset: str | None, pool: str | None) -> pd.DataFrame:
    """JARVIS materials to match against: the labelled dataset (with DOS and split) and the pool (no DOS)."""
    cols = ["jid", "split", "dos", "formula", "mp_id", "lattice_mat", "frac_coords", "elements"]
    cols += ["n_atoms_per_fu", "formula_mass", "volume_per_atom", "elastic_tensor"]
    frames = [pd.read_parquet(p, columns=cols) for p in (dataset, pool) if p]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True).drop_duplicates("jid", keep="first").reset_index(drop=True)


def _structure(lattice_mat: Any, frac_coords: Any, elements: Any):
    from pymatgen.core import Lattice, Structure

    lattice = np.asarray([np.asarray(r, float) for r in lattice_mat])
    coords = np.asarray([np.asarray(c, float) for c in frac_coords])
    return Structure(Lattice(lattice), [str(e) for e in elements], coords)


def match_jarvis(mp: pd.DataFrame, jarvis: pd.DataFrame) -> pd.DataFrame:
    """Per MP row: the JARVIS id, the method ('mp_id', 'structure_matcher' or 'none') and the matcher's
    normalised RMS displacement. Among several candidates: a labelled one first, then the closest, then by id."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(**MATCHER)
    labelled = jarvis["dos"].notna().to_numpy() if len(jarvis) else np.zeros(0, bool)
    by_formula = (
        {f: idx.to_numpy() for f, idx in jarvis.groupby("formula").groups.items()} if len(jarvis) else {}
    )
    out = []
    for row in mp.itertuples(index=False):
        hit = np.flatnonzero((jarvis["mp_id"] == row.material_id).to_numpy()) if len(jarvis) else []
        if len(hit):
            best = sorted(hit, key=lambda i: (not labelled[i], jarvis.at[i, "jid"]))[0]
            out.append((jarvis.at[best, "jid"], "mp_id", np.nan))
            continue
        candidates = []
        mine = _structure(row.lattice_mat, row.frac_coords, row.elements)
        for i in by_formula.get(row.formula, []):
            theirs = _structure(
                jarvis.at[i, "lattice_mat"], jarvis.at[i, "frac_coords"], jarvis.at[i, "elements"]
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rms = matcher.get_rms_dist(mine, theirs)
            if rms is not None:
                candidates.append((not labelled[i], float(rms[0]), jarvis.at[i, "jid"]))
        if candidates:
            best = min(candidates)
            out.append((best[2], "structure_matcher", best[1]))
        else:
            out.append((None, "none", np.nan))
    return pd.DataFrame(out, columns=["jid", "match_method", "match_rms"], index=mp.index)


# ------------------------------------------------------------------------------------ the stage table ---------
def build_table(
    mp: pd.DataFrame,
    jarvis: pd.DataFrame,
    pred: np.ndarray | None,
    model_id: str | None,
    unstable_fraction: float,
) -> pd.DataFrame:
    """mp.parquet (CROSSVAL_MP) from the MP rows, the JARVIS records and the predicted spectra."""
    table = mp.copy()
    dos_mp = np.stack(table["dos_mp"].to_numpy()).astype(np.float64)
    sides = {"mp": (dos_mp, np.ones(len(table), bool))}

    if pred is not None:
        sides["pred"] = (pred, np.isfinite(pred).all(axis=1))
    table["model_id"] = model_id

    match = match_jarvis(table, jarvis)
    table = table.join(match)
    info = jarvis.set_index("jid")
    jids = [j if isinstance(j, str) else None for j in table["jid"]]  # pandas reads a missing id as NaN
    splits = [None if j is None else info.at[j, "split"] for j in jids]
    table["jid_split"] = splits
    table["in_training_split"] = [
        None if j is None else bool(s == "train") for j, s in zip(jids, splits, strict=True)
    ]
    dos_jarvis = np.full_like(dos_mp, np.nan)
    for i, j in enumerate(jids):
        if j is not None and info.at[j, "dos"] is not None:
            dos_jarvis[i] = np.asarray(info.at[j, "dos"], dtype=np.float64)
    sides["jarvis"] = (dos_jarvis, np.isfinite(dos_jarvis).all(axis=1))

    for name, (spectra, have) in sides.items():
        props = pd.DataFrame(np.nan, index=table.index, columns=[*QUANTITIES, "negative_fraction"])
        props["stable"] = None
        if have.any():
            if name == "jarvis":  # the JARVIS record's own metadata (same compound, its own cell)
                meta = info.loc[table.loc[have, "jid"]].set_index(table.index[have])
            else:
                meta = table[have]
            computed = properties_at_300k(spectra[have], meta, unstable_fraction)
            props.loc[have, [*QUANTITIES, "negative_fraction"]] = computed[[*QUANTITIES, "negative_fraction"]]
            props["stable"] = props["stable"].astype(object)
            props.loc[have, "stable"] = computed["stable"].to_numpy()
        for col in props:
            table[f"{col}_{name}"] = props[col].to_numpy()
        if name != "mp":
            table[f"dos_{name}"] = [
                s.astype(np.float32) if h else None for s, h in zip(spectra, have, strict=True)
            ]
            table[f"spectral_mae_{name}"] = np.where(have, _spectral_mae(spectra, dos_mp), np.nan)
            for q in QUANTITIES:
                table[f"{q}_{name}_minus_mp"] = table[f"{q}_{name}"] - table[f"{q}_mp"]
    for name in ("pred", "jarvis"):  # without a model: the prediction columns stay empty
        for col in (
            f"dos_{name}",
            f"spectral_mae_{name}",
            f"stable_{name}",
            f"negative_fraction_{name}",
            *(f"{q}_{name}" for q in QUANTITIES),
            *(f"{q}_{name}_minus_mp" for q in QUANTITIES),
        ):
            if col not in table:
                table[col] = None if col.startswith(("dos_", "stable_")) else np.nan
    table["dos_mp"] = [np.asarray(d, np.float32) for d in table["dos_mp"]]
    return table


# ------------------------------------------------------------------------------------ summary -----------------
def _subsets(table: pd.DataFrame) -> dict[str, np.ndarray]:
    matched = table["match_method"].ne("none").to_numpy()
    in_train = table["in_training_split"].eq(True).to_numpy()
    return {
        "all": np.ones(len(table), bool),
        "matched": matched,
        "unmatched": ~matched,
        "not_in_training_split": ~in_train,
        "within_grid": (table["area_off_grid_mp"] <= OFF_GRID_TOLERANCE).to_numpy(),
    }


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """R^2, MAE, MAD, MAE:MAD and n (summary.parquet, CROSSVAL_SUMMARY) per comparison, subset and quantity."""
    from pipeline.reports.evaluate import regression_metrics

    rows = []
    nan = float("nan")
    for comparison, side in COMPARISONS.items():
        have = table[f"spectral_mae_{side}"].notna().to_numpy()
        for subset, mask in _subsets(table).items():
            m = table[mask & have]
            rows.append(
                {
                    "comparison": comparison,
                    "subset": subset,
                    "quantity": "spectrum",
                    "n": len(m),
                    "mae": float(m[f"spectral_mae_{side}"].mean()) if len(m) else nan,
                }
            )
            agree = m[f"stable_{side}"].astype(bool).to_numpy() == m["stable_mp"].astype(bool).to_numpy()
            rows.append(
                {
                    "comparison": comparison,
                    "subset": subset,
                    "quantity": "stability",
                    "n": len(m),
                    "accuracy": float(agree.mean()) if len(m) else nan,
                }
            )
            both = m[m["stable_mp"].astype(bool) & m[f"stable_{side}"].astype(bool)]
            for q in QUANTITIES:
                r = regression_metrics(both[f"{q}_mp"].to_numpy(float), both[f"{q}_{side}"].to_numpy(float))
                rows.append({"comparison": comparison, "subset": subset, "quantity": q, **r})
    out = pd.DataFrame(rows)
    for col in CROSSVAL_SUMMARY.names:
        if col not in out:
            out[col] = np.nan
    return out[CROSSVAL_SUMMARY.names]


# ------------------------------------------------------------------------------------ figures -----------------
LABELS = {
    "cv_300k": "C$_V$(300 K)  [J/(mol K)]",
    "s_vib_300k": "S$_{vib}$(300 K)  [J/(mol K)]",
    "tau_iso_inv": r"$\tau_i^{-1}$  [GHz]",
}


def _metric_text(summary: pd.DataFrame, comparison: str, quantity: str, label: str) -> str:
    r = summary[
        (summary["comparison"] == comparison)
        & (summary["subset"] == "all")
        & (summary["quantity"] == quantity)
    ]
    if r.empty or not r["n"].iloc[0] >= 2:
        return f"{label}: n={int(r['n'].iloc[0]) if len(r) else 0}"
    r = r.iloc[0]
    return f"{label}: R$^2$ {r['r2']:.3f}, MAE:MAD {r['mae_mad']:.3f}, MAE {r['mae']:.3g} (n={int(r['n'])})"


def parity_figure(table: pd.DataFrame, summary: pd.DataFrame):
    """Fig. 10 style: MP DFPT on x, ALIGNN-predicted (coloured by leakage) and JARVIS DFT (crosses) on y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    in_train = table["in_training_split"].eq(True).to_numpy()
    matched = table["match_method"].ne("none").to_numpy()
    groups = [
        ("not matched to JARVIS", ~matched, "tab:blue"),
        ("matched, not in training split", matched & ~in_train, "tab:green"),
        ("matched, in training split", matched & in_train, "tab:orange"),
    ]
    for ax, q in zip(axes, QUANTITIES, strict=True):
        x_all = []
        for side in ("pred", "jarvis"):
            stable = table["stable_mp"].eq(True).to_numpy() & table[f"stable_{side}"].eq(True).to_numpy()
            x = table[f"{q}_mp"].to_numpy(float)
            y = table[f"{q}_{side}"].to_numpy(float)
            ok = stable & np.isfinite(x) & np.isfinite(y)
            x_all += [x[ok], y[ok]]
            if side == "pred":
                for label, mask, color in groups:
                    if (ok & mask).any():
                        ax.scatter(
                            x[ok & mask],
                            y[ok & mask],
                            s=14,
                            alpha=0.75,
                            color=color,
                            label=f"ALIGNN, {label}",
                        )
            elif ok.any():
                ax.scatter(x[ok], y[ok], s=40, marker="x", color="black", label="JARVIS DFT (matched)")
        values = np.concatenate(x_all)
        if values.size == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        else:
            lo, hi = float(values.min()), float(values.max())
            pad = 0.05 * (hi - lo or 1.0)
            lims = (lo - pad, hi + pad)
            ax.plot(lims, lims, "k--", lw=1)
            ax.set_xlim(lims)
            ax.set_ylim(lims)
            ax.legend(loc="lower right", fontsize=6.5)
        text = (
            _metric_text(summary, "pred_vs_mp", q, "ALIGNN")
            + "\n"
            + _metric_text(summary, "jarvis_vs_mp", q, "JARVIS DFT")
        )
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=7)
        ax.set_xlabel(f"MP DFPT (PBEsol) {LABELS[q]}")
        ax.set_ylabel(f"ALIGNN / JARVIS DFT {LABELS[q]}")
    fig.suptitle(
        "Properties from the Materials Project DFPT DOS vs the ALIGNN-predicted DOS (on the MP structure) and "
        "the JARVIS DFT DOS (stable in both)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def example_rows(table: pd.DataFrame, n: int = 6) -> list[int]:
    """Rows to draw: the ones with a JARVIS DOS first, then predicted ones spread over the spectral-MAE range."""
    chosen = [i for i in range(len(table)) if pd.notna(table["spectral_mae_jarvis"].iloc[i])][: n // 2]
    mae = table["spectral_mae_pred"].to_numpy(float)
    rest = [i for i in np.argsort(np.where(np.isfinite(mae), mae, np.inf), kind="stable") if i not in chosen]
    rest = [i for i in rest if np.isfinite(mae[i])] or rest
    want = n - len(chosen)
    if rest and want > 0:
        picks = np.unique(np.round(np.linspace(0, len(rest) - 1, min(want, len(rest)))).astype(int))
        chosen += [int(rest[p]) for p in picks]
    return chosen


def spectra_figure(table: pd.DataFrame):
    """A few MP DFPT spectra overlaid with the predicted (and, where matched, the JARVIS DFT) spectrum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = example_rows(table)
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True)
    for ax, i in zip(axes.ravel(), rows + [None] * (6 - len(rows)), strict=True):
        if i is None:
            ax.axis("off")
            continue
        r = table.iloc[i]
        ax.plot(FREQ_CM, r["dos_mp"], color="black", lw=1.3, label="MP DFPT")
        maes = []
        if r["dos_pred"] is not None:
            ax.plot(FREQ_CM, r["dos_pred"], color="tab:red", lw=1.2, label="ALIGNN")
            maes.append(f"ALIGNN {r['spectral_mae_pred']:.3f}")
        if r["dos_jarvis"] is not None:
            ax.plot(
                FREQ_CM, r["dos_jarvis"], color="tab:blue", lw=1.1, ls="--", label=f"JARVIS DFT {r['jid']}"
            )
            maes.append(f"JARVIS {r['spectral_mae_jarvis']:.3f}")
        title = f"{r['material_id']} {r['formula']}" + (f"  MAE: {', '.join(maes)}" if maes else "")
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=6.5, loc="upper right")
        ax.tick_params(labelsize=7)
    for ax in axes[1]:
        ax.set_xlabel("frequency (cm$^{-1}$)", fontsize=8)
    fig.suptitle(
        "Materials Project DFPT DOS (re-binned, max-normalised) vs ALIGNN and JARVIS DFT; "
        "MAE on the 66-bin grid",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from pipeline.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


# ------------------------------------------------------------------------------------ stage -------------------
def run(
    mp_paths: list[str] | None,
    out_dir: str | Path,
    settings: CrossvalSettings,
    featurize: FeaturizeSettings,
    unstable_fraction: float,
    batch_size: int,
    model: str | None = None,
    dataset: str | None = None,
    pool: str | None = None,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    dos_getter: Any = None,
) -> dict[str, Any]:
    """The stage: read the documents of ``mp_paths`` (None: fetch ``settings.mp_ids``, else the MP ids of the
    JARVIS records, from ``settings.endpoint`` with the mp-api client, cached in ``cache_dir``), predict them with
    ``model`` (none: no predictions; graphs by ``featurize``, ``batch_size`` (``predict.batch_size``) graphs at a
    time), match them to the JARVIS records of ``dataset``/``pool``, compare (stability by ``unstable_fraction``,
    ``properties.unstable_fraction``); write mp/summary/rejects + figures into ``out_dir``."""
    out = Path(out_dir)
    rejects: list[Reject] = []
    jarvis = jarvis_records(dataset, pool)
    if mp_paths is None:  # the mp-api client
        if cache_dir is None:
            raise ValueError("the mp-api source needs a cache_dir")
        ids = list(settings.mp_ids) or sorted(set(jarvis["mp_id"].dropna()))
        if not ids:
            raise MPFetchError(
                "no Materials Project ids to fetch: give crossval.mp_ids or JARVIS records that carry one "
                "(figshare dft_3d 'reference')"
            )
        mp_paths, fetch_rejects = fetch_documents(ids, cache_dir, settings.endpoint, dos_getter)
        rejects += fetch_rejects
    mp = load_documents(iter_documents(mp_paths) if mp_paths else [], rejects, featurize.min_distance)
    if mp is None:
        write_rejects(rejects, out / "rejects.parquet")
        raise MPDocumentError(f"no usable Materials Project phonon document ({len(rejects)} rejected)")
    pred, model_id = (None, None)
    if model:
        pred, model_id = predict_spectra(model, mp, featurize, rejects, batch_size, device)
    table = build_table(mp, jarvis, pred, model_id, unstable_fraction)
    summary = summary_table(table)
    write_parquet(table, out / "mp.parquet", CROSSVAL_MP)
    write_parquet(summary, out / "summary.parquet", CROSSVAL_SUMMARY)
    write_rejects(rejects, out / "rejects.parquet")
    save(parity_figure(table, summary), out / "figures" / "parity.png")
    save(spectra_figure(table), out / "figures" / "spectra.png")
    counts = table["match_method"].value_counts().to_dict()
    result = {
        "documents": len(table),
        "predicted": int(table["spectral_mae_pred"].notna().sum()),
        "matched": int(sum(v for k_, v in counts.items() if k_ != "none")),
        "matched_by": {k_: int(v) for k_, v in counts.items() if k_ != "none"},
        "unmatched": int(counts.get("none", 0)),
        "with_jarvis_dos": int(table["spectral_mae_jarvis"].notna().sum()),
        "rejects": len(rejects),
    }
    print(f"crossval: {result}", file=sys.stderr)
    return result
