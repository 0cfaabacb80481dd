"""Screening summary (paper Sec. III C, Fig. 11 and supplementary Table S2) of a ``screen.parquet``.

:func:`write_summary` writes into the screening folder:

- ``summary.parquet`` (schema ``pipeline.schemas.SCREEN_SUMMARY``): the ``top_n`` highest and lowest materials of
  every property of :data:`RANKED`: C_V(300 K) and S_vib(300 K) gravimetric and tau_iso^-1 (Table S2), and the
  per-oscillator C_V/3N and S_vib/3N at 300 K (Fig. 11 d-i), with ensemble standard deviations and flags;
- ``summary.md`` and ``summary.html``: the same as rendered tables (Table S2's three properties), with counts
  of screened, rejected, unstable, beyond-grid and unseen-element materials;
- ``distributions.png``: histograms of the three Table S2 properties (Fig. 11 a-c);
- ``extreme_spectra.png``: predicted spectra (ensemble mean, band = +-1 std) of the materials with the lowest
  (top row, Fig. 11 d-f) and highest (bottom row, g-i) per-oscillator C_V, per-oscillator S_vib and tau_iso^-1.

Only the scalar columns are read for the ranking and only the selected materials' spectra afterwards (streamed),
so memory does not grow with the spectra of 41,000 structures.
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipeline.grid import FREQ_CM  # noqa: E402
from pipeline.io import atomic_path, write_parquet  # noqa: E402

#: (column, label, unit): ranked in summary.parquet; the first three are Table S2 and Fig. 11 a-c
RANKED = [
    ("cv_300k_j_per_kg_k", "C_V(300 K)", "J/(kg K)"),
    ("s_vib_300k_j_per_kg_k", "S_vib(300 K)", "J/(kg K)"),
    ("tau_iso_inv_ghz", "tau_iso^-1", "GHz"),
    ("cv_300k_per_oscillator_j_per_mol_k", "C_V(300 K)/3N", "J/(mol K)"),
    ("s_vib_300k_per_oscillator_j_per_mol_k", "S_vib(300 K)/3N", "J/(mol K)"),
]
TABLE_S2 = RANKED[:3]
#: Fig. 11 d-i: per-oscillator C_V and S_vib, and tau_iso^-1
SPECTRA_BY = [RANKED[3], RANKED[4], RANKED[2]]
SPECTRA_PER_PANEL = 3
FIGURES = ["distributions.png", "extreme_spectra.png"]


def _std_column(column: str) -> str:
    """cv_300k_j_per_kg_k -> cv_300k_std_j_per_kg_k (the SCREEN naming)."""
    for unit in ("_j_per_kg_k", "_j_per_mol_k", "_ghz"):
        if column.endswith(unit):
            return column[: -len(unit)] + "_std" + unit
    raise ValueError(column)


def _scalars(screen_path: str | os.PathLike) -> pd.DataFrame:
    cols = ["material_id", "formula", "stable", "beyond_grid", "unseen_elements"]
    cols += [c for c, _, _ in RANKED] + [_std_column(c) for c, _, _ in RANKED]
    return pq.read_table(screen_path, columns=cols).to_pandas()


def extremes(df: pd.DataFrame, column: str, n: int, end: str) -> pd.DataFrame:
    """The ``n`` rows with the highest or lowest finite ``column`` (ties: by material id)."""
    finite = df[np.isfinite(df[column].to_numpy(dtype=float))]
    ascending = end == "lowest"
    return finite.sort_values([column, "material_id"], ascending=[ascending, True], kind="stable").head(n)


def ranking(df: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """The SCREEN_SUMMARY rows: per property of RANKED, the ``top_n`` highest and lowest finite values (ties
    broken by material id, so the table is deterministic)."""
    rows = []
    for column, _, unit in RANKED:
        n_finite = int(np.isfinite(df[column].to_numpy(dtype=float)).sum())
        for end in ("highest", "lowest"):
            for rank, (_, r) in enumerate(extremes(df, column, top_n, end).iterrows(), start=1):
                rows.append(
                    {
                        "property": column,
                        "unit": unit,
                        "end": end,
                        "rank": rank,
                        "material_id": r["material_id"],
                        "formula": r["formula"],
                        "value": float(r[column]),
                        "std": float(r[_std_column(column)]),
                        "stable": bool(r["stable"]),
                        "beyond_grid": bool(r["beyond_grid"]),
                        "n_ranked": n_finite,
                    }
                )
    from pipeline.schemas import SCREEN_SUMMARY

    return pd.DataFrame(rows, columns=SCREEN_SUMMARY.names)


def _spectra(screen_path: str | os.PathLike, ids: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """material id -> (dos_pred, dos_std) for ``ids``, streamed batch by batch."""
    out = {}
    pf = pq.ParquetFile(screen_path)
    for batch in pf.iter_batches(batch_size=4096, columns=["material_id", "dos_pred", "dos_std"]):
        names = batch.column("material_id").to_pylist()
        wanted = [i for i, n in enumerate(names) if n in ids]
        if not wanted:
            continue
        pred = batch.column("dos_pred").take(wanted).to_pylist()
        std = batch.column("dos_std").take(wanted).to_pylist()
        for i, p, s in zip(wanted, pred, std, strict=True):
            out[names[i]] = (np.asarray(p, dtype=float), np.asarray(s, dtype=float))
    return out


# ------------------------------------------------------------------------------------ figures -----------------
def distributions_figure(df: pd.DataFrame, title: str) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (column, label, unit), letter in zip(axes, TABLE_S2, "abc", strict=True):
        v = df[column].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=min(60, max(5, int(np.sqrt(v.size)))), color="tab:blue", alpha=0.8)
            ax.axvline(np.median(v), color="k", ls="--", lw=1, label=f"median {np.median(v):.3g}")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_xlabel(f"{label}  [{unit}]")
        ax.set_ylabel("materials")
        ax.set_title(f"({letter}) n = {v.size}", fontsize=10)
    fig.suptitle(f"Predicted properties: {title}")
    fig.tight_layout()
    return fig


def _name(r: pd.Series) -> str:
    return r["formula"] if r["formula"] == r["material_id"] else f"{r['formula']} ({r['material_id']})"


def extreme_spectra_figure(df: pd.DataFrame, spectra: dict, title: str) -> plt.Figure:
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharex=True)
    letters = iter("defghi")
    for row, end in enumerate(("lowest", "highest")):
        for col, (column, label, unit) in enumerate(SPECTRA_BY):
            ax = axes[row, col]
            chosen = extremes(df, column, SPECTRA_PER_PANEL, end)
            for _, r in chosen.iterrows():
                mean, std = spectra[r["material_id"]]
                line = ax.plot(FREQ_CM, mean, lw=1.3, label=f"{_name(r)}: {r[column]:.3g}")
                if np.isfinite(std).all():
                    ax.fill_between(
                        FREQ_CM, mean - std, mean + std, color=line[0].get_color(), alpha=0.2, lw=0
                    )
            if chosen.empty:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
            else:
                ax.legend(fontsize=7, loc="upper right")
            ax.set_title(f"({next(letters)}) {end} {label} [{unit}]", fontsize=10)
            ax.axvline(0, color="gray", lw=0.6)
            if row == 1:
                ax.set_xlabel("frequency (cm$^{-1}$)")
            if col == 0:
                ax.set_ylabel("predicted DOS (max-normalised)")
    fig.suptitle(f"Predicted spectra with the lowest and highest contributions: {title}")
    fig.tight_layout()
    return fig


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


# ------------------------------------------------------------------------------------ tables ------------------
def _counts(df: pd.DataFrame, n_rejected: int | None) -> list[tuple[str, str]]:
    unseen = df["unseen_elements"]
    known = unseen.notna()
    items = [
        ("materials screened", f"{len(df)}"),
        ("rejected (rejects.parquet)", "?" if n_rejected is None else f"{n_rejected}"),
        ("predicted dynamically unstable", f"{int((~df['stable'].astype(bool)).sum())}"),
        ("beyond_grid (C_V, S_vib biased)", f"{int(df['beyond_grid'].astype(bool).sum())}"),
        (
            "with elements absent from the training set",
            f"{int(sum(len(u) > 0 for u in unseen[known]))}" if known.any() else "not recorded by the model",
        ),
    ]
    return items


def _fmt(value: float, std: float) -> str:
    return f"{value:.4g} ± {std:.2g}" if np.isfinite(std) else f"{value:.4g}"


def _flags(r: pd.Series) -> str:
    flags = [] if r["stable"] else ["unstable"]
    if r["beyond_grid"]:
        flags.append("beyond_grid")
    return ", ".join(flags)


def _side_by_side(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    part = summary[summary["property"] == column]
    hi, lo = part[part["end"] == "highest"], part[part["end"] == "lowest"]
    n = max(len(hi), len(lo))

    def cells(sub: pd.DataFrame, i: int) -> list[str]:
        if i >= len(sub):
            return ["", "", "", ""]
        r = sub.iloc[i]
        return [r["material_id"], r["formula"], _fmt(r["value"], r["std"]), _flags(r)]

    return pd.DataFrame(
        [[i + 1, *cells(hi, i), *cells(lo, i)] for i in range(n)],
        columns=[
            "rank",
            "highest: id",
            "formula",
            "value ± std",
            "flags",
            "lowest: id",
            "formula ",
            "value ± std ",
            "flags ",
        ],
    )


def render_markdown(summary: pd.DataFrame, df: pd.DataFrame, title: str, n_rejected: int | None) -> str:
    lines = [f"# Screening summary: {title}", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in _counts(df, n_rejected)] + [""]
    for column, label, unit in TABLE_S2:
        table = _side_by_side(summary, column)
        lines += [f"## {label} [{unit}]", ""]
        lines.append("| " + " | ".join(c.strip() for c in table.columns) + " |")
        lines.append("|" + "---|" * len(table.columns))
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
        lines.append("")
    return "\n".join(lines)


def render_html(summary: pd.DataFrame, df: pd.DataFrame, title: str, n_rejected: int | None) -> str:
    parts = [f"<h2>Screening summary: {html.escape(title)}</h2>", "<table>"]
    parts += [
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _counts(df, n_rejected)
    ]
    parts.append("</table>")
    for column, label, unit in TABLE_S2:
        parts.append(f"<h3>{html.escape(label)} [{html.escape(unit)}]</h3>")
        parts.append(_side_by_side(summary, column).to_html(index=False, border=0))
    style = "<style>table{border-collapse:collapse;font-family:sans-serif;font-size:12px}td,th{padding:2px 8px}</style>"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{style}</head><body>{''.join(parts)}</body></html>\n"


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_summary(
    screen_path: str | os.PathLike, out_dir: str | os.PathLike, top_n: int, title: str
) -> dict[str, Path]:
    """Write summary.parquet, summary.md, summary.html and the two PNGs into ``out_dir`` (``top_n``: the
    ``screen.top_n`` highest and lowest per property); return their paths."""
    from pipeline.schemas import SCREEN_SUMMARY

    out = Path(out_dir)
    df = _scalars(screen_path)
    summary = ranking(df, top_n)
    rejects = out / "rejects.parquet"
    n_rejected = pq.ParquetFile(rejects).metadata.num_rows if rejects.exists() else None
    files = {
        "summary": out / "summary.parquet",
        "summary_md": out / "summary.md",
        "summary_html": out / "summary.html",
    }
    write_parquet(summary, files["summary"], SCREEN_SUMMARY)
    _write_text(files["summary_md"], render_markdown(summary, df, title, n_rejected))
    _write_text(files["summary_html"], render_html(summary, df, title, n_rejected))
    wanted = set()
    for column, _, _ in SPECTRA_BY:
        for end in ("lowest", "highest"):
            wanted |= set(extremes(df, column, SPECTRA_PER_PANEL, end)["material_id"])
    spectra = _spectra(screen_path, wanted)
    files["distributions"] = out / "distributions.png"
    files["extreme_spectra"] = out / "extreme_spectra.png"
    _save(distributions_figure(df, title), files["distributions"])
    _save(extreme_spectra_figure(df, spectra, title), files["extreme_spectra"])
    print(f"summary: {len(df)} materials -> {', '.join(str(p) for p in files.values())}", file=sys.stderr)
    return files
