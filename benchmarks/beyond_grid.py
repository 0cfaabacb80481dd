"""How well ``screen``'s ``beyond_grid`` flag finds spectra that reach the top of the 1000 cm^-1 grid, measured on
labelled data (the dos stage's ``dataset.parquet``, e.g. of ../shared/data).

Truth: the DFT spectrum has at least ``--truth-weight`` (default 1 %) of its non-negative weight (bin sums) in the
top 4 bins (>= 940 cm^-1). The jarvis-leaderboard spectra stop at the grid (their 1000 cm^-1 bin is empty), so
weight right below the edge is what marks a spectrum that continues above it. Every labelled material is screened
with the model (``python -m pipeline screen dataset.parquet``), and the flag is compared with the truth: recall,
precision and how many each criterion (predicted weight, hydrogen, short light-element bond) finds, on all
materials and on the official test split alone (the model never saw those).

    python benchmarks/beyond_grid.py --dataset results/shared_accuracy/dos/dataset.parquet [--model M.pt]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.screening import screen
from pipeline.stages.screen import Settings


def measure(dataset: str | Path, model: str | Path | None, truth_weight: float, work: Path) -> dict:
    ds = pd.read_parquet(dataset, columns=["jid", "split", "dos", "formula"])
    dos = np.stack(ds["dos"]).astype(np.float64)
    truth = pd.Series(screen.top_bins_weight(dos) >= truth_weight, index=ds["jid"])
    s = Settings.from_config({})  # the schema's defaults, as `python -m pipeline screen` without --set
    screen.run(
        [dataset],
        work,
        s.screen,
        s.properties.temperatures,
        s.properties.unstable_fraction,
        s.featurize.min_distance,
        model,
        progress=False,
        summary=False,
        head_unstable_fraction=s.properties.head_unstable_fraction,
    )
    df = pd.read_parquet(work / "screen.parquet").set_index("material_id")
    df["truth"] = truth.reindex(df.index)
    df["split"] = ds.set_index("jid")["split"].reindex(df.index)
    reason = df["beyond_grid_reason"]
    df["by_weight"] = reason.str.contains("predicted")
    df["by_h"] = reason.str.contains("contains H")
    df["by_bond"] = reason.str.contains("short stiff bond")
    out = {"truth_weight": truth_weight, "top_bins_from_cm": screen.TOP_BINS_FROM_CM}
    for name, sub in (("all", df), ("test", df[df["split"] == "test"])):
        pos = sub[sub["truth"]]
        flagged = sub[sub["beyond_grid"]]
        out[name] = {
            "materials": len(sub),
            "dft_reaching_top": len(pos),
            "flagged": len(flagged),
            "recall": round(float(pos["beyond_grid"].mean()), 3) if len(pos) else None,
            "precision": round(float(flagged["truth"].mean()), 3) if len(flagged) else None,
            "found_by_weight": int(pos["by_weight"].sum()),
            "found_by_hydrogen": int(pos["by_h"].sum()),
            "found_by_bond": int(pos["by_bond"].sum()),
            "recall_weight_only": round(float(pos["by_weight"].mean()), 3) if len(pos) else None,
            "missed": sorted(
                f"{i} {f}"
                for i, f in zip(
                    pos.index[~pos["beyond_grid"]], pos.loc[~pos["beyond_grid"], "formula"], strict=True
                )
            ),
            "flagged_false_with_h": int((flagged["by_h"] & ~flagged["truth"]).sum()),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="labelled MATERIALS table (dos stage dataset.parquet)")
    p.add_argument("--model", default=None, help="model.pt (default: the shipped model)")
    p.add_argument("--truth-weight", type=float, default=0.01)
    p.add_argument("--work-dir", type=Path, default=None)
    a = p.parse_args()
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="beyond_grid_"))
    print(json.dumps(measure(a.dataset, a.model, a.truth_weight, work), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
