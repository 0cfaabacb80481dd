"""The report stage's library: the figures, tables and landing text of the Snakemake report (``snakemake --report``).
The command line and the list of what it writes: ``pipeline.stages.report`` (``python -m pipeline report --help``);
one caption per figure in report/*.rst."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from pipeline.config import ConfigNode  # noqa: E402
from pipeline.grid import FREQ_CM  # noqa: E402
from pipeline.io import atomic_path  # noqa: E402

FIGURES = [
    "parity.png",
    "mae_histogram.png",
    "mae_descriptors.png",
    "confusion.png",
    "cv_mae_vs_debye.png",
    "leakage.png",
    "baselines.png",
]
#: written by every run (the data set and the training), with or without predictions
OVERVIEW_FIGURES = ["dataset.png", "learning_curves.png"]
#: every figure the report rule declares (rules/report.smk), without the extension
FIGURES_ALL = [f.removesuffix(".png") for f in OVERVIEW_FIGURES + FIGURES]
CRYSTAL_SYSTEMS = ["cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic"]
DFT_COLOR, PRED_COLOR, DUP_COLOR = "black", "tab:red", "tab:orange"


@dataclass(frozen=True)
class ReportSettings(ConfigNode):
    """The ``report`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml)."""

    KEY: ClassVar[str] = "report"
    seed: int


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
        ax.scatter(x[ok & ~dup], y[ok & ~dup], s=10, alpha=0.6, color="tab:blue")
        ax.scatter(x[ok & dup], y[ok & dup], s=10, alpha=0.7, color=DUP_COLOR)
        ax.set_xlim(lims)
        ax.set_ylim(lims)
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"predicted {label}")
        txt = (
            f"all (n={int(ok.sum())}): MAE {_metric(metrics, 'all', 'alignn_dos', q, 'mae'):.3g}, "
            f"MAE:MAD {_metric(metrics, 'all', 'alignn_dos', q, 'mae_mad'):.3f}, "
            f"R$^2$ {_metric(metrics, 'all', 'alignn_dos', q, 'r2'):.3f}\n"
            f"non-dup (n={int((ok & ~dup).sum())}): "
            f"MAE:MAD {_metric(metrics, 'non_duplicate', 'alignn_dos', q, 'mae_mad'):.3f}, "
            f"R$^2$ {_metric(metrics, 'non_duplicate', 'alignn_dos', q, 'r2'):.3f}"
        )
        ax.text(
            0.03,
            0.97,
            txt,
            transform=ax.transAxes,
            va="top",
            fontsize=7.5,
            bbox=dict(fc="white", ec="none", alpha=0.8),
        )
    # one legend for the figure, below the panels: it never covers a panel's metric text (tests/test_report.py)
    fig.legend(
        handles=[
            plt.Line2D([], [], ls="", marker="o", ms=4, color="tab:blue", label="non-duplicate"),
            plt.Line2D([], [], ls="", marker="o", ms=4, color=DUP_COLOR, label="near-duplicate"),
            plt.Line2D([], [], ls="--", color="k", lw=1, label="y = x"),
            plt.Line2D([], [], ls=":", color="k", lw=0.8, label="± IQR of the DFT values"),
        ],
        loc="lower center",
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle("Properties from DFT vs predicted DOS (test materials stable in both)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def mae_histogram_figure(spectral: pd.DataFrame, spectra: pd.DataFrame, seed: int) -> plt.Figure:
    """Histogram of the per-material spectral MAE, and one random example from each of the first (up to) 8
    histogram bins that hold a material (empty bins get no panel), drawn with ``seed`` (``report.seed``)."""
    mae = spectral["mae"].to_numpy(float)
    lo, hi = float(mae.min()), float(max(mae.max(), mae.min() + 1e-3))
    edges = np.linspace(lo, hi + 1e-9 * (hi - lo), 16)
    joined = spectral.merge(spectra, on="jid")
    which = np.clip(
        np.searchsorted(edges, joined["mae"].to_numpy(float), side="right") - 1, 0, len(edges) - 2
    )
    filled = [b for b in range(len(edges) - 1) if (which == b).any()][:8]
    n_rows = 1 + (len(filled) + 3) // 4
    fig = plt.figure(figsize=(11, 2.5 + 2.5 * (n_rows - 1)))
    gs = fig.add_gridspec(n_rows, 4, height_ratios=[1.6] + [1] * (n_rows - 1))
    ax = fig.add_subplot(gs[0, :])
    ax.hist(mae, bins=edges, color="tab:blue", alpha=0.7, label=f"all (n={len(mae)})")
    nd = ~spectral["near_duplicate"].to_numpy(bool)
    ax.hist(mae[nd], bins=edges, histtype="step", color="k", lw=1.5, label=f"non-duplicate (n={nd.sum()})")
    ax.set_xlabel("per-material spectral MAE (max-normalised DOS)")
    ax.set_ylabel("test materials")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    counts = np.histogram(mae, bins=edges)[0]
    ax.set_ylim(0, counts.max() * 1.35 + 0.5)  # room for the legend above the bars
    ax.legend(loc="upper right")
    rng = np.random.default_rng(seed)
    for i, b in enumerate(filled):
        sub = fig.add_subplot(gs[1 + i // 4, i % 4])
        in_bin = joined[which == b]
        row = in_bin.iloc[int(rng.integers(len(in_bin)))]
        sub.plot(FREQ_CM, row["dos"], color=DFT_COLOR, lw=1.2, label="DFT")
        sub.plot(FREQ_CM, row["dos_pred"], color=PRED_COLOR, lw=1.2, label="predicted")
        sub.set_title(f"{row['jid']}  MAE {row['mae']:.3f}", fontsize=8)
        sub.tick_params(labelsize=7)
        sub.text(0.02, 0.95, f"bin {b + 1}", transform=sub.transAxes, fontsize=7, va="top")
        if i == 0:
            sub.legend(fontsize=6, loc="upper right")
        if i % 4 == 0:
            sub.set_ylabel("DOS (max-normalised)", fontsize=8)
        sub.set_xlabel("frequency (cm$^{-1}$)", fontsize=8)
    shown = f"the first {len(filled)} filled bins" if len(filled) > 1 else "the one filled bin"
    fig.suptitle(f"Spectral MAE on the test set, with a random example from each of {shown}")
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


def _log_ticks(ax: plt.Axes, which: str = "x") -> None:
    """Readable log-axis labels: decades as plain numbers (0.01, 0.1); 2 and 5 in between only when the axis spans
    less than two decades. Matplotlib's default labels minor ticks as 2x10^-2, 3x10^-2, ..., which overlap."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    lo, hi = min(lo, hi), max(lo, hi)
    span = np.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if span >= 2 else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 1.0))
    axis.set_minor_formatter(NullFormatter())


def leakage_figure(spectral: pd.DataFrame, duplicate_mae: float) -> plt.Figure:
    """Nearest train+val spectrum MAE of every test spectrum (histogram with the near-duplicate threshold
    ``duplicate_mae``, ``evaluate.duplicate_mae``, marked) and the spectral MAE against it."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    d = spectral["nearest_train_mae"].to_numpy(float)
    d = d[np.isfinite(d)]
    if len(d):
        bins = np.logspace(np.log10(max(d.min(), 1e-4)), np.log10(max(d.max(), 1e-3)), 40)
        axes[0].hist(np.clip(d, bins[0], None), bins=bins, color="tab:gray")
        axes[0].set_xscale("log")
        axes[0].axvline(duplicate_mae, color=DUP_COLOR, lw=2, label=f"duplicate threshold {duplicate_mae:g}")
        frac = float(np.mean(spectral["near_duplicate"]))
        axes[0].set_title(f"{frac:.1%} of test spectra have a near-duplicate in train+val", fontsize=10)
        axes[0].legend(fontsize=8)
        _log_ticks(axes[0], "x")
    else:
        _no_data(axes[0])
    axes[0].set_xlabel(
        "per-bin MAE to the nearest train+val DFT spectrum\n(exact duplicates at the left edge)"
    )
    axes[0].set_ylabel("test materials")
    axes[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    dup = spectral["near_duplicate"].to_numpy(bool)
    axes[1].scatter(
        spectral["nearest_train_mae"], spectral["mae"], s=8, c=np.where(dup, DUP_COLOR, "tab:blue")
    )
    axes[1].set_xscale("log")
    if len(d):
        _log_ticks(axes[1], "x")
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


# ------------------------------------------------------------------------ data set and training ---------------
#: element symbols by atomic number (1..118), for the periodic-table panel of the data-set figure
SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr "
    "Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir "
    "Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh "
    "Fl Mc Lv Ts Og"
).split()
_PERIOD_STARTS = (1, 3, 11, 19, 37, 55, 87)


def table_position(z: int) -> tuple[int, int]:
    """(row, column), 0-based, of element ``z`` in the 18-column periodic table; La-Lu and Ac-Lr sit in rows 8
    and 9 below a gap (row 7)."""
    period = max(i for i, start in enumerate(_PERIOD_STARTS) if z >= start)
    k = z - _PERIOD_STARTS[period]
    if period == 0:
        return 0, 0 if k == 0 else 17
    if period in (1, 2):
        return period, k if k < 2 else k + 10
    if period in (3, 4):
        return period, k
    if 2 <= k <= 16:  # lanthanides / actinides
        return period + 3, k
    return period, k if k < 2 else k - 14


def element_counts(elements: pd.Series) -> dict[str, int]:
    """Element -> number of materials containing it (each material counted once per element)."""
    counts: dict[str, int] = {}
    for els in elements:
        for e in set(els if els is not None else []):
            counts[str(e)] = counts.get(str(e), 0) + 1
    return counts


def training_set(dataset: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows the model was trained on (split 'train') and how to name them; all rows when none is marked."""
    train = dataset[dataset["split"] == "train"] if "split" in dataset else dataset.iloc[:0]
    return (train, "train split") if len(train) else (dataset, "all labelled materials")


def dataset_figure(dataset: pd.DataFrame) -> plt.Figure:
    """Paper Fig. 2 for the training set actually used: (a) materials containing each element on the periodic
    table, (b) number of elements, (c) crystal system, (d) volume per atom."""
    from matplotlib.colors import LogNorm

    train, what = training_set(dataset)
    counts = element_counts(train["elements"])
    fig = plt.figure(figsize=(12, 8.5))
    gs = fig.add_gridspec(2, 3, height_ratios=[1.45, 1])
    ax = fig.add_subplot(gs[0, :])
    grid = np.full((10, 18), np.nan)
    for z, sym in enumerate(SYMBOLS, start=1):
        r, c = table_position(z)
        grid[r, c] = counts.get(sym, 0)
    shown = np.where(grid > 0, grid, np.nan)
    top = max(counts.values()) if counts else 1
    im = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1, vmax=max(top, 2)), aspect="equal")
    for z, sym in enumerate(SYMBOLS, start=1):
        r, c = table_position(z)
        n = counts.get(sym, 0)
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=n == 0, fc="#eeeeee", ec="white", lw=0.8))
        colour = "black" if n == 0 or n > np.sqrt(top) else "white"
        ax.text(c, r - 0.12, sym, ha="center", va="center", fontsize=7.5, color=colour)
        if n:
            ax.text(c, r + 0.27, str(n), ha="center", va="center", fontsize=5.5, color=colour)
    ax.set_xlim(-0.5, 17.5)
    ax.set_ylim(9.5, -0.5)
    ax.axis("off")
    cb = fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    cb.set_label("training materials containing the element")
    _log_ticks(cb.ax, "y")
    best = max(counts, key=counts.get) if counts else "-"
    ax.set_title(
        f"(a) element enrichment: {len(counts)} elements; most frequent {best} ({counts.get(best, 0)} materials)",
        fontsize=10,
    )
    panels = [fig.add_subplot(gs[1, i]) for i in range(3)]
    n_el = train["n_elements"].dropna().astype(int)
    values = np.arange(1, (n_el.max() if len(n_el) else 1) + 1)
    panels[0].bar(values, [(n_el == v).sum() for v in values], color="tab:blue")
    panels[0].set_xticks(values)
    panels[0].set_xlabel("number of elements")
    panels[0].set_title("(b)", fontsize=10, loc="left")
    systems = train["crystal_system"].fillna("unknown")
    order = CRYSTAL_SYSTEMS + sorted(set(systems) - set(CRYSTAL_SYSTEMS))
    panels[1].bar(range(len(order)), [(systems == c).sum() for c in order], color="tab:green")
    panels[1].set_xticks(range(len(order)), order, rotation=35, ha="right", fontsize=8)
    panels[1].set_xlabel("crystal system")
    panels[1].set_title("(c)", fontsize=10, loc="left")
    vol = train["volume_per_atom"].dropna().to_numpy(float)
    if len(vol):
        panels[2].hist(vol, bins=min(40, max(5, len(vol) // 5)), color="tab:purple")
        panels[2].axvline(
            np.median(vol), color="k", ls="--", lw=1, label=f"median {np.median(vol):.1f} Å$^3$"
        )
        panels[2].legend(fontsize=8)
    else:
        _no_data(panels[2])
    panels[2].set_xlabel("volume per atom (Å$^3$)")
    panels[2].set_title("(d)", fontsize=10, loc="left")
    for p in panels:
        p.set_ylabel("training materials")
        p.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Training data: {len(train)} materials ({what}; paper Fig. 2)")
    fig.tight_layout()
    return fig


def learning_curves_figure(history: pd.DataFrame) -> plt.Figure:
    """Training loss and validation MAE per epoch of every ensemble member; the kept (best) epoch marked."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    members = sorted(history["member"].dropna().unique()) if len(history) else []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, m in enumerate(members):
        h = history[history["member"] == m].sort_values("epoch")
        c = colours[i % len(colours)]
        axes[0].plot(h["epoch"], h["train_loss"], color=c, lw=1.2, label=f"member {int(m)}")
        axes[1].plot(h["epoch"], h["val_mae"], color=c, lw=1.2, label=f"member {int(m)}")
        best = h[h["is_best"]]
        if len(best):
            b = best.iloc[-1]
            axes[1].plot(b["epoch"], b["val_mae"], "*", color=c, ms=11, mec="k", mew=0.5)
    if not members:
        for ax in axes:
            _no_data(ax)
    axes[0].set_ylabel("training loss (train.loss)")
    axes[0].set_yscale("log")
    if members:
        _log_ticks(axes[0], "y")
    axes[1].set_ylabel("validation spectral MAE")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if members:
            ax.legend(fontsize=7, ncol=2)
    best_mae = history.loc[history["is_best"], "val_mae"].groupby(history["member"]).last() if members else []
    kept = ", ".join(f"{v:.4f}" for v in best_mae)
    fig.suptitle(f"Learning curves: {len(members)} member(s); kept weights (*) at val MAE {kept or '-'}")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------ metrics table and description ---------
#: the headline numbers: (column label, quantity, metric, format)
HEADLINE = [
    ("spectral MAE", "spectrum", "mae", "{:.4f}"),
    ("C_V(300 K) MAE [J/(mol K)]", "cv_300k", "mae", "{:.2f}"),
    ("C_V MAE:MAD", "cv_300k", "mae_mad", "{:.3f}"),
    ("C_V R²", "cv_300k", "r2", "{:.3f}"),
    ("S_vib(300 K) MAE [J/(mol K)]", "s_vib_300k", "mae", "{:.2f}"),
    ("S_vib MAE:MAD", "s_vib_300k", "mae_mad", "{:.3f}"),
    ("S_vib R²", "s_vib_300k", "r2", "{:.3f}"),
    ("τ_iso⁻¹ MAE:MAD", "tau_iso_inv", "mae_mad", "{:.3f}"),
    ("stability accuracy", "stability", "accuracy", "{:.3f}"),
]
HEADLINE_SUBSETS = ("all", "non_duplicate", "near_duplicate")


def headline_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per subset (all / non_duplicate / near_duplicate) of the DOS-mediated model's headline metrics,
    formatted; n = materials with a predicted spectrum (property metrics use those stable in both)."""
    rows = []
    for subset in HEADLINE_SUBSETS:
        spec = metrics[
            (metrics["subset"] == subset)
            & (metrics["method"] == "alignn_dos")
            & (metrics["quantity"] == "spectrum")
        ]
        n = int(spec["n"].iloc[0]) if len(spec) else 0
        if n == 0:
            continue
        row = {"subset": subset, "n": str(n)}
        for label, q, m, fmt in HEADLINE:
            v = _metric(metrics, subset, "alignn_dos", q, m)
            row[label] = fmt.format(v) if np.isfinite(v) else "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["subset", "n"] + [h[0] for h in HEADLINE])


def baselines_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """MAE:MAD at 300 K of the DOS-mediated model and the baselines (paper Fig. 8)."""
    rows = []
    for method, label in (
        ("alignn_dos", "ALIGNN DOS (this model)"),
        ("direct_alignn", "direct ALIGNN (scalar)"),
        ("debye", "Debye"),
        ("born_von_karman", "Born-von Kármán"),
    ):
        subset = "has_sound_velocity" if method in ("debye", "born_von_karman") else "all"
        row = {"method": label, "subset": subset}
        for q, name in (("cv_300k", "C_V(300 K) MAE:MAD"), ("s_vib_300k", "S_vib(300 K) MAE:MAD")):
            v = _metric(metrics, subset, method, q, "mae_mad")
            n = metrics[
                (metrics["subset"] == subset) & (metrics["method"] == method) & (metrics["quantity"] == q)
            ]["n"]
            row[name] = f"{v:.3f} (n={int(n.iloc[0])})" if np.isfinite(v) and len(n) else "not run"
        rows.append(row)
    return pd.DataFrame(rows)


_TABLE_CSS = (
    "body{font-family:sans-serif;font-size:13px;margin:12px}table{border-collapse:collapse;margin-bottom:18px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
    "td:first-child,th:first-child{text-align:left}caption{text-align:left;font-weight:bold;padding:4px 0}"
)


def metrics_html(metrics: pd.DataFrame, split: str) -> str:
    """The report's metrics page: headline table, baselines, and every row of metrics.parquet (the evaluate stage's
    metrics of the ``split`` materials, ``evaluate.split``)."""
    import html

    def table(df: pd.DataFrame, caption: str) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
            for row in df.itertuples(index=False)
        )
        return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"

    full = metrics.copy()
    full["value"] = [f"{v:.6g}" for v in full["value"]]
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>metrics</title><style>{_TABLE_CSS}</style>"
        f"</head><body>"
        + table(
            headline_table(metrics),
            f"Headline metrics on the {split} split (results/reports/metrics.parquet)",
        )
        + table(
            baselines_table(metrics), "DOS-mediated model vs baselines at 300 K (MAE:MAD, lower is better)"
        )
        + "<details><summary>every metric (metrics.parquet, schema pipeline.schemas.METRICS)</summary>"
        + table(full, "subset × method × quantity × metric")
        + "</details></body></html>"
    )


def _rst_table(df: pd.DataFrame) -> str:
    """``df`` as an rst list-table (every cell a string)."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [list(df.columns), *df.astype(str).values.tolist()]:
        lines.append("   * - " + str(row[0]))
        lines += [f"     - {c}" for c in row[1:]]
    return "\n".join(lines) + "\n"


def _no_jinja(text: str) -> str:
    """Snakemake renders the description with Jinja2: keep braces of data out of its syntax."""
    return text.replace("{{", "{ {").replace("}}", "} }").replace("{%", "{ %").replace("{#", "{ #")


#: the columns of the description's (narrow) tables
COMPACT = ("subset", "n", "spectral MAE", "C_V MAE:MAD", "S_vib MAE:MAD", "stability accuracy")


def model_card_metrics(card: Path, compact: bool = False) -> str | None:
    """The test-metrics table of a model card (the markdown table under '## Test metrics'), as rst; ``compact``:
    only the columns of :data:`COMPACT`."""
    text = card.read_text()
    m = re.search(r"^## Test metrics[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    if not m:
        return None
    rows = [r.strip().strip("|").split("|") for r in m.group(1).splitlines() if r.strip().startswith("|")]
    rows = [[c.strip() for c in r] for r in rows if not set("".join(r).strip()) <= set("-: ")]
    if len(rows) < 2:
        return None
    table = pd.DataFrame(rows[1:], columns=rows[0])
    if compact:
        table = table[[c for c in table.columns if c in COMPACT]]
    return _rst_table(table)


def description_rst(
    run: dict[str, Any],
    dataset: pd.DataFrame,
    pool_size: int | None,
    history: pd.DataFrame | None,
    metrics: pd.DataFrame | None,
    model: str | None,
    *,
    split: str,
) -> str:
    """The Snakemake report's landing text: what ran, on which data, with which model, and the headline metrics
    (of the ``split`` materials, ``evaluate.split``).

    ``run`` holds the facts the rule passes for the text (source, split method, preset, members, ...)."""
    counts = dataset.groupby("split").size().to_dict() if len(dataset) else {}
    source = run.get("source", "?")
    where = f"``{run.get('local_path')}``" if source == "local" else "figshare ``dft_3d``"
    stages = ["fetch", "dos", "featurize", "train", "ensemble"]
    if metrics is not None:
        stages += ["predict", "properties", "evaluate"]
    else:
        stages += ["properties"]
    stages += ["report"] + [s for s in ("crossval", "screen") if run.get(s)]
    out = [
        "Phonon DOS from crystal structures (ALIGNN)",
        "============================================",
        "",
        "A reproduction of Gurunathan, Choudhary & Tavazza, *Rapid prediction of phonon structure and properties "
        "using ALIGNN*, Phys. Rev. Materials 7, 023803 (2023): a crystal structure goes in, a 66-bin phonon DOS "
        "(-300 to 1000 cm⁻¹, max-normalised) comes out, and heat capacity, vibrational entropy, isotope "
        "scattering and dynamical stability are integrated from it.",
        "",
        "What ran",
        "--------",
        "",
        "Stages "
        + " → ".join(f"``{s}``" for s in stages)
        + f" into ``{run.get('results_dir', 'results')}``. "
        "Every table is a Parquet file whose columns are documented, with units, in ``pipeline/schemas.py`` "
        "(``pipeline.schemas.units(path)`` lists them).",
        "",
        "Data",
        "----",
        "",
        f"Structures from {where}, phonon DOS labels from ``{run.get('dos_source', '?')}``, split "
        f"``{run.get('split_method', '?')}``: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "val", "test"))
        + " labelled materials"
        + (f", {pool_size} structures without a DOS (the inference pool)" if pool_size is not None else "")
        + ". The training set is pictured under *Data set* (paper Fig. 2); what each stage refused is in its "
        "``rejects.parquet``.",
        "",
        "Model",
        "-----",
        "",
    ]
    card = Path(model).with_suffix(".md") if model else None  # a packed model's card (pipeline.nn.pretrained)
    card_name = (
        os.path.relpath(card) if card is not None and not os.path.relpath(card).startswith("..") else card
    )
    if model and card is not None and card.exists():
        out += [
            f"The predictions were made by the packed model ``{Path(model).name}`` (not trained in this run; "
            f"model card ``{card_name}``). Its own test metrics, from its card:",
            "",
            model_card_metrics(card, compact=True) or "(the card has no metrics table)",
            "",
        ]
        if run.get("split_method") == "official":
            out += [
                "It was trained on the official jarvis-leaderboard train split and this run uses the official "
                f"split, so no {split} material of this run was in its training set.",
                "",
            ]
        else:
            out += [
                f"**Caution:** it was trained on the official jarvis-leaderboard train split, and this run's "
                f"split is ``{run.get('split_method')}``, so {split} materials below may have been in its "
                "training set: the metrics can be optimistic.",
                "",
            ]
        if history is not None and len(history):
            out += [
                f"This run also trained its own {history['member'].nunique()}-member ensemble "
                f"(preset ``{run.get('preset')}``; learning curves under *Training*), used by the stages that "
                "take the workflow's trained model.",
                "",
            ]
    else:
        members = history["member"].nunique() if history is not None and len(history) else run.get("ensemble")
        text = (
            f"Trained in this run: {members} ALIGNN member(s) (``pipeline.nn.model``), preset ``{run.get('preset')}``, "
            "differing only in their seed; predictions are their mean (``train/model.pt``)."
        )
        if history is not None and len(history):
            best = history[history["is_best"]].groupby("member").last()
            text += (
                f" Epochs: {int(history['epoch'].max())}; kept weights at validation MAE "
                + ", ".join(
                    f"{v:.4f} (epoch {int(e)})" for v, e in zip(best["val_mae"], best["epoch"], strict=True)
                )
                + ". Learning curves under *Training*."
            )
        out += [text, ""]
    if metrics is not None:
        out += [
            f"Headline metrics ({split} split)",
            "-" * len(f"Headline metrics ({split} split)"),
            "",
            _rst_table(headline_table(metrics)[list(COMPACT)]),
            "",
            "Property metrics (MAE:MAD at 300 K) use the materials stable by both spectra; near_duplicate: a "
            "train+val DFT spectrum within per-bin MAE ``evaluate.duplicate_mae`` (the paper's leakage criterion). "
            "MAEs, R², the baselines and every metric: *Metrics*; figures: *Spectra*, *Derived properties*, "
            "*Stability*, *Leakage*, *Baselines*.",
            "",
        ]
        n_test = counts.get(split, 0)
        if n_test < 50:
            out += [
                f"With {n_test} {split} materials these numbers are a smoke test, not a measurement "
                "(README, *Measured results*, has the real-data numbers).",
                "",
            ]
    else:
        out += ["No predictions were evaluated (``properties.use_predictions: false``).", ""]
    return _no_jinja("\n".join(out))


# ------------------------------------------------------------------------------------ stage -------------------
def run(
    reports_dir: str | Path,
    dataset: str,
    predictions: str,
    out_dir: str | Path,
    settings: ReportSettings,
    duplicate_mae: float,
) -> list[Path]:
    """The evaluation figures (:data:`FIGURES`) from the evaluate outputs in ``reports_dir``, the DFT spectra of
    ``dataset`` and the predicted ones of ``predictions`` -> ``out_dir``; returns the files written. The leakage
    figure marks ``duplicate_mae`` (``evaluate.duplicate_mae``, the threshold the evaluate stage used)."""
    seed = settings.seed
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
        "leakage.png": lambda: leakage_figure(spectral, duplicate_mae),
        "baselines.png": lambda: baselines_figure(metrics),
    }
    written = []
    for name in FIGURES:
        _save(figures[name](), out / name)
        written.append(out / name)
        print(f"report: wrote {out / name}", file=sys.stderr)
    return written


def overview(dataset: str, out_dir: str, history: str | None = None) -> list[Path]:
    """dataset.png (paper Fig. 2 of the training split) and, with ``history``, learning_curves.png."""
    out = Path(out_dir)
    ds = pd.read_parquet(
        dataset, columns=["split", "elements", "n_elements", "crystal_system", "volume_per_atom"]
    )
    written = [out / "dataset.png"]
    _save(dataset_figure(ds), written[0])
    if history is not None:
        written.append(out / "learning_curves.png")
        _save(learning_curves_figure(pd.read_parquet(history)), written[-1])
    for path in written:
        print(f"report: wrote {path}", file=sys.stderr)
    return written


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    print(f"report: wrote {path}", file=sys.stderr)
    return Path(path)


def write_report(
    dataset: str,
    out_dir: str | Path,
    settings: ReportSettings,
    *,
    duplicate_mae: float,
    evaluate_split: str,
    reports_dir: str | Path,
    predictions: str | None = None,
    pool: str | None = None,
    history: str | None = None,
    description: str | Path | None = None,
    model: str | None = None,
    facts: Mapping[str, Any] | None = None,
) -> None:
    """The stage: the overview figures (:func:`overview`); with ``predictions``, the evaluation figures
    (:func:`run`, from the evaluate outputs in ``reports_dir``) and metrics.html; with ``description``, the
    report's landing text (:func:`description_rst`: ``facts`` are the run's settings it names, ``pool`` its size,
    ``model`` the model whose card is quoted). ``duplicate_mae`` and ``evaluate_split`` are the ``evaluate`` settings
    the evaluate stage ran with (its threshold marked in the leakage figure; the split the metrics are of)."""
    facts = dict(facts or {})
    out = Path(out_dir)
    overview(dataset, out_dir, history)
    metrics = None
    if predictions:
        run(reports_dir, dataset, predictions, out_dir, settings, duplicate_mae)
        metrics = pd.read_parquet(Path(reports_dir) / "metrics.parquet")
        write_text(out / "metrics.html", metrics_html(metrics, evaluate_split))
    if description:
        ds = pd.read_parquet(dataset, columns=["split"])
        pool_size = len(pd.read_parquet(pool, columns=["jid"])) if pool else None
        history_df = pd.read_parquet(history) if history else None
        text = description_rst(facts, ds, pool_size, history_df, metrics, model, split=evaluate_split)
        write_text(description, text)
