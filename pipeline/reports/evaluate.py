"""The evaluate stage's library: DFT vs predicted spectra on one split (the paper's Sec. III), with leakage analysis
and baselines. The command line, the files it writes and the definitions of every metric: ``pipeline.stages.evaluate``
(its module docstring is ``python -m pipeline evaluate --help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.leakage import nearest_mae, stack_spectra
from pipeline.io import write_parquet, write_rejects
from pipeline.nn.baselines import model_spectra
from pipeline.physics import thermo
from pipeline.physics.debye import material_velocities
from pipeline.reports.settings import EvaluateSettings
from pipeline.schemas import METRICS, SPECTRAL, THERMAL

STAGE = "evaluate"
PROPERTY_QUANTITIES = ["cv_300k", "s_vib_300k", "tau_iso_inv"]


# ------------------------------------------------------------------------------------ metric helpers ----------
def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, MAD (of y_true), MAE:MAD and R^2 over finite pairs; NaN when fewer than 2 pairs."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    y, p = y_true[ok], y_pred[ok]
    n = int(ok.sum())
    if n < 2:
        return {"mae": np.nan, "mad": np.nan, "mae_mad": np.nan, "r2": np.nan, "n": n}
    mae = float(np.mean(np.abs(y - p)))
    mad = float(np.mean(np.abs(y - y.mean())))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - p) ** 2)) / ss_tot if ss_tot > 0 else np.nan
    return {"mae": mae, "mad": mad, "mae_mad": mae / mad if mad > 0 else np.nan, "r2": r2, "n": n}


def confusion(stable_true: np.ndarray, stable_pred: np.ndarray) -> dict[str, float]:
    """Confusion counts with 'stable' as positive, and accuracy / precision / recall."""
    t, p = np.asarray(stable_true, bool), np.asarray(stable_pred, bool)
    tp, fp = int(np.sum(t & p)), int(np.sum(~t & p))
    fn, tn = int(np.sum(t & ~p)), int(np.sum(~t & ~p))
    n = tp + fp + fn + tn
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "accuracy": (tp + tn) / n if n else np.nan,
        "precision": tp / (tp + fp) if tp + fp else np.nan,
        "recall": tp / (tp + fn) if tp + fn else np.nan,
    }


def _rows(
    subset: str, method: str, quantity: str, values: dict[str, float], n: int | None = None
) -> list[dict]:
    n_val = int(values.get("n", n if n is not None else 0))
    return [
        {"subset": subset, "method": method, "quantity": quantity, "metric": k, "value": float(v), "n": n_val}
        for k, v in values.items()
        if k != "n"
    ]


# ------------------------------------------------------------------------------------ building blocks ---------
def spectral_table(test: pd.DataFrame, reference: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per test material: spectral MAE to its prediction and nearest train+val spectrum."""
    dft = stack_spectra(list(test["dos"])).astype(np.float64)
    pred = stack_spectra(list(test["dos_pred"])).astype(np.float64)
    nearest = nearest_mae(dft, stack_spectra(list(reference["dos"])))
    return pd.DataFrame(
        {
            "jid": test["jid"].to_numpy(),
            "mae": np.mean(np.abs(dft - pred), axis=1),
            "nearest_train_mae": nearest,
            "near_duplicate": nearest < threshold,
            "volume_per_atom": test["volume_per_atom"].to_numpy(dtype=float),
            "n_elements": test["n_elements"].to_numpy(),
            "crystal_system": test["crystal_system"].to_numpy(),
            "relaxation": test["relaxation"].to_numpy() if "relaxation" in test else None,
        }
    )


def thermal_table(
    test: pd.DataFrame, props_dft: pd.DataFrame, props_pred: pd.DataFrame, fractions: Sequence[float]
) -> pd.DataFrame:
    """DFT vs predicted properties, C_V at fractions of the reference T_D, and the analytic baselines."""
    d = props_dft.set_index("jid").loc[test["jid"]]
    p = props_pred.set_index("jid").loc[test["jid"]]
    n = test["n_atoms_per_fu"].to_numpy(dtype=float)
    theta = d["debye_temperature"].to_numpy(dtype=float)
    temps = np.outer(theta, fractions)
    cv_frac_dft = thermo.cv_at_temperatures(stack_spectra(list(test["dos"])), n, temps)
    cv_frac_pred = thermo.cv_at_temperatures(stack_spectra(list(test["dos_pred"])), n, temps)

    n_rows = len(test)
    found = [
        material_velocities(et, k, g, fm, int(na), va)
        for et, k, g, fm, na, va in zip(
            test["elastic_tensor"],
            test["bulk_modulus_gpa"] if "bulk_modulus_gpa" in test else [None] * n_rows,
            test["shear_modulus_gpa"] if "shear_modulus_gpa" in test else [None] * n_rows,
            test["formula_mass"],
            test["n_atoms_per_fu"],
            test["volume_per_atom"],
            strict=True,
        )
    ]
    velocities = [v for v, _ in found]
    vol = test["volume_per_atom"].to_numpy(dtype=float)
    out = pd.DataFrame(
        {
            "jid": test["jid"].to_numpy(),
            "stable_both": (d["stable"].to_numpy(bool) & p["stable"].to_numpy(bool)),
            "debye_temperature": theta,
            "debye_source": d["debye_source"].to_numpy() if "debye_source" in d else None,
            "velocity_source": [source for _, source in found],
            "cv_300k_dft": d["cv_300k"].to_numpy(float),
            "cv_300k_pred": p["cv_300k"].to_numpy(float),
            "s_vib_300k_dft": d["s_vib_300k"].to_numpy(float),
            "s_vib_300k_pred": p["s_vib_300k"].to_numpy(float),
            "tau_iso_inv_dft": np.where(d["isotope_flag"] == "ok", d["tau_iso_inv"], np.nan),
            "tau_iso_inv_pred": np.where(p["isotope_flag"] == "ok", p["tau_iso_inv"], np.nan),
            "cv_debye_fractions": [list(map(float, fractions))] * len(test),
            "cv_at_fraction_dft": list(cv_frac_dft),
            "cv_at_fraction_pred": list(cv_frac_pred),
        }
    )
    for kind, name in (("debye", "debye_model"), ("bvk", "bvk_model")):
        spectra = model_spectra(velocities, vol, n.astype(int), kind)
        have = np.all(np.isfinite(spectra), axis=1)
        cv = np.full(len(test), np.nan)
        s = np.full(len(test), np.nan)
        if have.any():
            props = thermo.thermal_properties(spectra[have], n[have], [300.0])
            cv[have], s[have] = props.cv[:, 0], props.s_vib[:, 0]
        out[f"cv_300k_{name}"] = cv
        out[f"s_vib_300k_{name}"] = s
    return out


def metrics_table(spectral: pd.DataFrame, thermal: pd.DataFrame, direct: pd.DataFrame | None) -> pd.DataFrame:
    """All metrics on every subset (long format, METRICS schema)."""
    merged = spectral.merge(thermal.drop(columns="near_duplicate", errors="ignore"), on="jid")
    subsets: dict[str, np.ndarray] = {
        "all": np.ones(len(merged), bool),
        "non_duplicate": ~merged["near_duplicate"].to_numpy(bool),
        "near_duplicate": merged["near_duplicate"].to_numpy(bool),
    }
    for value in sorted(merged["relaxation"].dropna().unique()):
        subsets[f"relaxation={value}"] = (merged["relaxation"] == value).to_numpy()
    # the analytic baselines exist only where an elastic tensor gives a sound velocity: same materials for all
    has_velocity = merged["cv_300k_debye_model"].notna().to_numpy()
    if has_velocity.any():
        subsets["has_sound_velocity"] = has_velocity
    rows: list[dict] = []
    for name, mask in subsets.items():
        m = merged[mask]
        mae = m["mae"].to_numpy(float)
        rows += _rows(name, "alignn_dos", "spectrum", {"mae": np.mean(mae) if len(mae) else np.nan}, len(mae))
        rows += _rows(
            name, "alignn_dos", "spectrum", {"median_mae": np.median(mae) if len(mae) else np.nan}, len(mae)
        )
        rows += _rows(name, "alignn_dos", "stability", confusion(m["stable_dft"], m["stable_pred"]), len(m))
        both = m[m["stable_both"].to_numpy(bool)]
        for q in PROPERTY_QUANTITIES:
            rows += _rows(name, "alignn_dos", q, regression_metrics(both[f"{q}_dft"], both[f"{q}_pred"]))
        if len(both):
            fractions = both["cv_debye_fractions"].iloc[0]
            dft = np.stack(both["cv_at_fraction_dft"].to_numpy())
            pred = np.stack(both["cv_at_fraction_pred"].to_numpy())
            for k, f in enumerate(fractions):
                rows += _rows(
                    name, "alignn_dos", f"cv_{f:g}_debye", regression_metrics(dft[:, k], pred[:, k])
                )
        for method, col in (("debye", "debye_model"), ("born_von_karman", "bvk_model")):
            have = both[f"cv_300k_{col}"].notna()
            rows += _rows(name, method, "sound_velocity", {"n_missing": float((~have).sum())}, len(both))
            for q in ("cv_300k", "s_vib_300k"):
                rows += _rows(name, method, q, regression_metrics(both[f"{q}_dft"], both[f"{q}_{col}"]))
        if direct is not None:
            d = both.merge(direct, on="jid", how="inner")
            for q in ("cv_300k", "s_vib_300k"):
                if f"{q}_direct" in d:
                    rows += _rows(
                        name, "direct_alignn", q, regression_metrics(d[f"{q}_dft"], d[f"{q}_direct"])
                    )
    return pd.DataFrame(rows, columns=METRICS.names)


# ------------------------------------------------------------------------------------ stage ------------------
def run(
    dataset: str,
    predictions: str,
    properties: str,
    out_dir: str,
    settings: EvaluateSettings,
    direct: str | None = None,
) -> dict[str, pd.DataFrame]:
    """The stage: the ``settings.split`` materials of ``dataset`` with their ``predictions`` and ``properties``
    (and, when given, the ``direct`` scalar predictions) -> ``out_dir``/{spectral,thermal,metrics,rejects}.parquet;
    returns the three tables."""
    split, threshold, fractions = settings.split, settings.duplicate_mae, settings.debye_fractions
    rejects: list[tuple[str, str, str]] = []
    ds = pd.read_parquet(dataset)
    preds = pd.read_parquet(predictions)[["jid", "dos_pred"]].drop_duplicates("jid")
    props = pd.read_parquet(properties)
    reference = ds[ds["split"].isin(["train", "val"]) & ds["dos"].notna()]
    test = ds[(ds["split"] == split) & ds["dos"].notna()].merge(preds, on="jid", how="left")
    no_pred = test["dos_pred"].isna()
    for jid in test.loc[no_pred, "jid"]:
        rejects.append((jid, STAGE, f"{split} material has no prediction in {Path(predictions).name}"))
    test = test[~no_pred]
    props_dft = props[props["source"] == "dft"].drop_duplicates("jid")
    props_pred = props[props["source"] == "pred"].drop_duplicates("jid")
    have = test["jid"].isin(props_dft["jid"]) & test["jid"].isin(props_pred["jid"])
    for jid in test.loc[~have, "jid"]:
        rejects.append(
            (jid, STAGE, "no DFT and predicted properties row (see results/properties/rejects.parquet)")
        )
    test = test[have].sort_values("jid").reset_index(drop=True)
    if test.empty:
        raise SystemExit(f"evaluate: no {split} material has a DFT spectrum, a prediction and properties")
    print(
        f"evaluate: {len(test)} {split} materials, {len(reference)} train+val reference spectra",
        file=sys.stderr,
    )

    spectral = spectral_table(test, reference, threshold)
    d = props_dft.set_index("jid").loc[test["jid"], "stable"].to_numpy(bool)
    p = props_pred.set_index("jid").loc[test["jid"], "stable"].to_numpy(bool)
    spectral["stable_dft"], spectral["stable_pred"] = d, p
    thermal = thermal_table(test, props_dft, props_pred, fractions)
    thermal.insert(1, "near_duplicate", spectral["near_duplicate"].to_numpy())
    direct_df = pd.read_parquet(direct) if direct else None
    metrics = metrics_table(spectral, thermal, direct_df)

    out = Path(out_dir)
    write_parquet(spectral, out / "spectral.parquet", SPECTRAL)
    write_parquet(thermal, out / "thermal.parquet", THERMAL)
    write_parquet(metrics, out / "metrics.parquet", METRICS)
    write_rejects(rejects, out / "rejects.parquet")
    return {"spectral": spectral, "thermal": thermal, "metrics": metrics}


def summary(metrics: pd.DataFrame) -> str:
    """Human-readable headline numbers."""
    m = metrics.set_index(["subset", "method", "quantity", "metric"])["value"]
    lines = []
    for subset in ("all", "non_duplicate", "near_duplicate"):
        if (subset, "alignn_dos", "spectrum", "mae") not in m.index:
            continue
        line = f"{subset:>15}: spectral MAE {m[(subset, 'alignn_dos', 'spectrum', 'mae')]:.4f}"
        line += f"  stability acc {m[(subset, 'alignn_dos', 'stability', 'accuracy')]:.3f}"
        for q in PROPERTY_QUANTITIES:
            key = (subset, "alignn_dos", q, "mae_mad")
            if key in m.index:
                line += f"  {q} MAE:MAD {m[key]:.3f}"
        lines.append(line)
    return "\n".join(lines)
