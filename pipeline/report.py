"""report stage: PNG figures of the evaluation (paper Figs. 5-8) for ``snakemake --report``.

    python -m pipeline report --reports-dir results/reports --dataset results/dos/dataset.parquet \\
        --predictions results/predict/test.parquet --out-dir results/reports/figures

Figures (one caption each in report/*.rst):
  parity.png            DFT vs predicted C_V(300 K), C_V(0.5 T_D), S_vib(300 K), tau_i^-1 (stable in both)
  mae_histogram.png     spectral MAE histogram (all / non-duplicate) with example spectra from the first 8 bins
  mae_descriptors.png   spectral MAE vs volume per atom, number of elements and crystal system
  confusion.png         dynamical-stability confusion matrix with accuracy / precision / recall
  cv_mae_vs_debye.png   C_V MAE vs T / T_D (all and non-duplicate test materials)
  leakage.png           nearest train+val spectrum MAE of every test spectrum, duplicate threshold marked
  baselines.png         MAE:MAD of the DOS-mediated model and the baselines at 300 K
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.grid import FREQ_CM  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402
from pipeline.leakage import DUPLICATE_MAE  # noqa: E402

FIGURES = [
    "parity.png",
    "mae_histogram.png",
    "mae_descriptors.png",
    "confusion.png",
    "cv_mae_vs_debye.png",
    "leakage.png",
    "baselines.png",
]
CRYSTAL_SYSTEMS = ["cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic"]
DFT_COLOR, PRED_COLOR, DUP_COLOR = "black", "tab:red", "tab:orange"


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def _metric(metrics: pd.DataFrame, subset: str, method: str, quantity: str, metric: str) -> float:
    m = metrics[
        (metrics["subset"] == subset)
        & (metrics["method"] == method)
        & (metrics["quantity"] == quantity)
        & (metrics["metric"] == metric)
    ]
    return float(m["value"].iloc[0]) if len(m) else float("nan")


def _no_data(ax: plt.Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


# ------------------------------------------------------------------------------------ figures -----------------
def parity_figure(thermal: pd.DataFrame, metrics: pd.DataFrame) -> plt.Figure:
    stable = thermal[thermal["stable_both"]]
    half = []
    for fr, d, p in zip(
        stable["cv_debye_fractions"], stable["cv_at_fraction_dft"], stable["cv_at_fraction_pred"], strict=True
    ):
        k = int(np.argmin(np.abs(np.asarray(fr) - 0.5)))
        half.append((d[k], p[k]))
    half_arr = np.array(half) if half else np.empty((0, 2))
    panels = [
        ("C$_V$(300 K)  [J/(mol K)]", stable["cv_300k_dft"], stable["cv_300k_pred"], "cv_300k"),
        ("C$_V$(0.5 T$_D$)  [J/(mol K)]", half_arr[:, 0], half_arr[:, 1], "cv_0.5_debye"),
        ("S$_{vib}$(300 K)  [J/(mol K)]", stable["s_vib_300k_dft"], stable["s_vib_300k_pred"], "s_vib_300k"),
        (r"$\tau_i^{-1}$  [GHz]", stable["tau_iso_inv_dft"], stable["tau_iso_inv_pred"], "tau_iso_inv"),
    ]
    dup = stable["near_duplicate"].to_numpy(bool)
    fig, axes = plt.subplots(2, 2, figsize=(9, 8.5))
    for ax, (label, x, y, q) in zip(axes.ravel(), panels, strict=True):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            _no_data(ax)
            ax.set_title(label)
            continue
        lo, hi = min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())
        pad = 0.04 * (hi - lo or 1.0)
        lims = (lo - pad, hi + pad)
        q1, q3 = np.percentile(x[ok], [25, 75])
        iqr = q3 - q1
        ax.plot(lims, lims, "k--", lw=1)
        ax.plot(lims, (lims[0] + iqr, lims[1] + iqr), "k:", lw=0.8)
        ax.plot(lims, (lims[0] - iqr, lims[1] - iqr), "k:", lw=0.8)
        ax.scatter(x[ok & ~dup], y[ok & ~dup], s=10, alpha=0.6, color="tab:blue", label="non-duplicate")
        ax.scatter(x[ok & dup], y[ok & dup], s=10, alpha=0.7, color=DUP_COLOR, label="near-duplicate")
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"predicted {label}")
        txt = (
            f"all: MAE {_metric(metrics, 'all', 'alignn_dos', q, 'mae'):.3g}, "
            f"MAE:MAD {_metric(metrics, 'all', 'alignn_dos', q, 'mae_mad'):.3f}, "
            f"R$^2$ {_metric(metrics, 'all', 'alignn_dos', q, 'r2'):.3f}\n"
            f"non-dup: MAE:MAD {_metric(metrics, 'non_duplicate', 'alignn_dos', q, 'mae_mad'):.3f}, "
            f"R$^2$ {_metric(metrics, 'non_duplicate', 'alignn_dos', q, 'r2'):.3f}  (n={int(ok.sum())})"
        )
        ax.text(0.03, 0.97, txt, transform=ax.transAxes, va="top", fontsize=7.5)
        ax.legend(loc="best", fontsize=7)
    fig.suptitle("Properties from DFT vs predicted DOS (test materials stable in both; dotted: target IQR)")
    fig.tight_layout()
    return fig


def mae_histogram_figure(spectral: pd.DataFrame, spectra: pd.DataFrame, seed: int = 0) -> plt.Figure:
    mae = spectral["mae"].to_numpy(float)
    lo, hi = float(mae.min()), float(max(mae.max(), mae.min() + 1e-3))
    edges = np.linspace(lo, hi + 1e-9 * (hi - lo), 16)
    fig = plt.figure(figsize=(11, 7.5))
    gs = fig.add_gridspec(3, 4, height_ratios=[1.6, 1, 1])
    ax = fig.add_subplot(gs[0, :])
    ax.hist(mae, bins=edges, color="tab:blue", alpha=0.7, label=f"all (n={len(mae)})")
    nd = ~spectral["near_duplicate"].to_numpy(bool)
    ax.hist(mae[nd], bins=edges, histtype="step", color="k", lw=1.5, label=f"non-duplicate (n={nd.sum()})")
    ax.set_xlabel("per-material spectral MAE (max-normalised DOS)")
    ax.set_ylabel("test materials")
    ax.legend()
    rng = np.random.default_rng(seed)
    joined = spectral.merge(spectra, on="jid")
    legend_done = False
    for b in range(8):
        sub = fig.add_subplot(gs[1 + b // 4, b % 4])
        in_bin = joined[(joined["mae"] >= edges[b]) & (joined["mae"] < edges[b + 1])]
        if in_bin.empty:
            _no_data(sub, "empty bin")
        else:
            row = in_bin.iloc[int(rng.integers(len(in_bin)))]
            sub.plot(FREQ_CM, row["dos"], color=DFT_COLOR, lw=1.2, label="DFT")
            sub.plot(FREQ_CM, row["dos_pred"], color=PRED_COLOR, lw=1.2, label="predicted")
            sub.set_title(f"{row['jid']}  MAE {row['mae']:.3f}", fontsize=8)
        sub.tick_params(labelsize=7)
        sub.text(0.02, 0.95, f"bin {b + 1}", transform=sub.transAxes, fontsize=7, va="top")
        if not legend_done and not in_bin.empty:
            sub.legend(fontsize=6, loc="upper right")
            legend_done = True
        if b >= 4:
            sub.set_xlabel("frequency (cm$^{-1}$)", fontsize=8)
    fig.suptitle("Spectral MAE on the test set, with a random example from each of the first 8 bins")
    fig.tight_layout()
    return fig


def mae_descriptors_figure(spectral: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    dup = spectral["near_duplicate"].to_numpy(bool)
    axes[0].scatter(
        spectral.loc[~dup, "volume_per_atom"], spectral.loc[~dup, "mae"], s=8, alpha=0.6, label="non-dup"
    )
    axes[0].scatter(
        spectral.loc[dup, "volume_per_atom"],
        spectral.loc[dup, "mae"],
        s=8,
        alpha=0.6,
        color=DUP_COLOR,
        label="near-dup",
    )
    axes[0].set_xlabel("volume per atom (Å$^3$)")
    axes[0].set_ylabel("spectral MAE")
    axes[0].legend(fontsize=7)
    for ax, col, order in (
        (axes[1], "n_elements", sorted(spectral["n_elements"].dropna().unique())),
        (axes[2], "crystal_system", [c for c in CRYSTAL_SYSTEMS if c in set(spectral["crystal_system"])]),
    ):
        groups = [spectral.loc[spectral[col] == v, "mae"].to_numpy() for v in order]
        if groups:
            ax.boxplot(groups, showfliers=False)
            ax.set_xticks(
                range(1, len(order) + 1),
                [f"{v}\n(n={len(g)})" for v, g in zip(order, groups, strict=True)],
                fontsize=7,
                rotation=30 if col == "crystal_system" else 0,
            )
            ax.plot(
                range(1, len(order) + 1),
                [g.mean() for g in groups],
                "o",
                color=PRED_COLOR,
                ms=4,
                label="mean",
            )
            ax.legend(fontsize=7)
        else:
            _no_data(ax)
        ax.set_xlabel(col.replace("_", " "))
        ax.set_ylabel("spectral MAE")
    fig.suptitle("Spectral MAE vs volume per atom, number of elements and crystal system")
    fig.tight_layout()
    return fig


def confusion_figure(metrics: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, subset in zip(axes, ("all", "non_duplicate"), strict=True):
        get = lambda k, s=subset: _metric(metrics, s, "alignn_dos", "stability", k)  # noqa: E731
        mat = np.array([[get("tp"), get("fn")], [get("fp"), get("tn")]])
        if not np.all(np.isfinite(mat)):
            _no_data(ax)
            continue
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(
                j,
                i,
                f"{int(v)}",
                ha="center",
                va="center",
                fontsize=14,
                color="white" if v > mat.max() / 2 else "black",
            )
        ax.set_xticks([0, 1], ["predicted stable", "predicted unstable"])
        ax.set_yticks([0, 1], ["DFT stable", "DFT unstable"])
        ax.set_title(
            f"{subset}: accuracy {get('accuracy'):.3f}\nprecision {get('precision'):.3f}, recall {get('recall'):.3f}",
            fontsize=10,
        )
    fig.suptitle("Dynamical stability (unstable: > 10 % of the DOS area below 0 cm$^{-1}$)")
    fig.tight_layout()
    return fig


def cv_mae_vs_debye_figure(metrics: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = metrics[(metrics["method"] == "alignn_dos") & metrics["quantity"].str.match(r"cv_[\d.]+_debye")]
    for subset, style in (("all", "o-"), ("non_duplicate", "s--"), ("near_duplicate", "^:")):
        r = rows[(rows["subset"] == subset) & (rows["metric"] == "mae")].copy()
        if r.empty:
            continue
        r["f"] = r["quantity"].str.extract(r"cv_([\d.]+)_debye")[0].astype(float)
        r = r.sort_values("f")
        ax.plot(r["f"], r["value"], style, label=f"{subset} (n={int(r['n'].iloc[0])})")
    if not ax.lines:
        _no_data(ax)
    ax.set_xlabel("T / T$_D$")
    ax.set_ylabel("C$_V$ MAE  [J/(mol K)]")
    ax.set_title("C$_V$ error vs fraction of the Debye temperature")
    ax.legend()
    fig.tight_layout()
    return fig


def leakage_figure(spectral: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    d = spectral["nearest_train_mae"].to_numpy(float)
    d = d[np.isfinite(d)]
    if len(d):
        bins = np.logspace(np.log10(max(d.min(), 1e-4)), np.log10(max(d.max(), 1e-3)), 40)
        axes[0].hist(np.clip(d, bins[0], None), bins=bins, color="tab:gray")
        axes[0].set_xscale("log")
        axes[0].axvline(DUPLICATE_MAE, color=DUP_COLOR, lw=2, label=f"duplicate threshold {DUPLICATE_MAE}")
        frac = float(np.mean(spectral["near_duplicate"]))
        axes[0].set_title(f"{frac:.1%} of test spectra have a near-duplicate in train+val", fontsize=10)
        axes[0].legend(fontsize=8)
    else:
        _no_data(axes[0])
    axes[0].set_xlabel(
        "per-bin MAE to the nearest train+val DFT spectrum (exact duplicates at the left edge)"
    )
    axes[0].set_ylabel("test materials")
    dup = spectral["near_duplicate"].to_numpy(bool)
    axes[1].scatter(
        spectral["nearest_train_mae"], spectral["mae"], s=8, c=np.where(dup, DUP_COLOR, "tab:blue")
    )
    axes[1].set_xscale("log")
    axes[1].set_xlabel("MAE to nearest train+val spectrum")
    axes[1].set_ylabel("prediction MAE")
    for name, m in (("near-dup", dup), ("non-dup", ~dup)):
        if m.any():
            axes[1].axhline(
                spectral.loc[m, "mae"].mean(),
                ls="--",
                lw=1,
                color=DUP_COLOR if name == "near-dup" else "tab:blue",
                label=f"{name} mean {spectral.loc[m, 'mae'].mean():.3f}",
            )
    axes[1].legend(fontsize=8)
    fig.suptitle("Train/test leakage: near-duplicate spectra")
    fig.tight_layout()
    return fig


def baselines_figure(metrics: pd.DataFrame) -> plt.Figure:
    methods = [
        ("alignn_dos", "ALIGNN DOS"),
        ("direct_alignn", "direct ALIGNN"),
        ("debye", "Debye"),
        ("born_von_karman", "Born-von Kármán"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, q, title in ((axes[0], "cv_300k", "C$_V$(300 K)"), (axes[1], "s_vib_300k", "S$_{vib}$(300 K)")):
        labels, vals, ns = [], [], []
        for m, label in methods:
            subset = "has_sound_velocity" if m in ("debye", "born_von_karman") else "all"
            v = _metric(metrics, subset, m, q, "mae_mad")
            n = metrics[
                (metrics["subset"] == subset) & (metrics["method"] == m) & (metrics["quantity"] == q)
            ]["n"]
            labels.append(label)
            vals.append(v)
            ns.append(int(n.iloc[0]) if len(n) else 0)
        x = np.arange(len(labels))
        ax.bar(x, np.nan_to_num(vals), color=["tab:blue", "tab:purple", "tab:green", "tab:olive"])
        for i, (v, n) in enumerate(zip(vals, ns, strict=True)):
            ax.text(
                i,
                np.nan_to_num(v),
                f"{v:.3f}\nn={n}" if np.isfinite(v) else "not\navailable",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("MAE : MAD")
        ax.set_title(title)
        top = np.nanmax(vals) if np.any(np.isfinite(vals)) else 1.0
        ax.set_ylim(0, top * 1.3 + 1e-9)
    missing = _metric(metrics, "all", "debye", "sound_velocity", "n_missing")
    n_all = metrics[
        (metrics["subset"] == "all")
        & (metrics["method"] == "debye")
        & (metrics["quantity"] == "sound_velocity")
    ]["n"]
    fig.suptitle(
        f"DOS-mediated model vs baselines (Debye/BvK need an elastic tensor: missing for {int(missing) if np.isfinite(missing) else '?'}"
        f" of {int(n_all.iloc[0]) if len(n_all) else '?'} stable test materials)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ stage -------------------
def run(reports_dir: str, dataset: str, predictions: str, out_dir: str, seed: int = 0) -> list[Path]:
    rdir, out = Path(reports_dir), Path(out_dir)
    spectral = pd.read_parquet(rdir / "spectral.parquet")
    thermal = pd.read_parquet(rdir / "thermal.parquet")
    metrics = pd.read_parquet(rdir / "metrics.parquet")
    spectra = pd.read_parquet(dataset, columns=["jid", "dos"]).merge(
        pd.read_parquet(predictions, columns=["jid", "dos_pred"]), on="jid"
    )
    figures = {
        "parity.png": lambda: parity_figure(thermal, metrics),
        "mae_histogram.png": lambda: mae_histogram_figure(spectral, spectra, seed),
        "mae_descriptors.png": lambda: mae_descriptors_figure(spectral),
        "confusion.png": lambda: confusion_figure(metrics),
        "cv_mae_vs_debye.png": lambda: cv_mae_vs_debye_figure(metrics),
        "leakage.png": lambda: leakage_figure(spectral),
        "baselines.png": lambda: baselines_figure(metrics),
    }
    written = []
    for name in FIGURES:
        _save(figures[name](), out / name)
        written.append(out / name)
        print(f"report: wrote {out / name}", file=sys.stderr)
    return written


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import SchemaArgumentParser, schema_option

    p = SchemaArgumentParser(
        prog="python -m pipeline report",
        description="PNG figures of the evaluation (parity, MAE histogram with example spectra, MAE vs descriptors, "
        "stability confusion matrix, C_V MAE vs T/T_D, leakage, baselines).",
    )
    p.add_argument("--reports-dir", default="results/reports", help="evaluate stage outputs")
    p.add_argument("--dataset", required=True, help="results/dos/dataset.parquet (DFT spectra for examples)")
    p.add_argument("--predictions", required=True, help="results/predict/test.parquet (predicted spectra)")
    p.add_argument("--out-dir", default="results/reports/figures")
    schema_option(p, "--seed", key="report.seed")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    run(a.reports_dir, a.dataset, a.predictions, a.out_dir, a.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
