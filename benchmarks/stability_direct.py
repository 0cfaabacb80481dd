"""A tried #16 variant: a separate stability model. ALIGNN with a one-value head (the direct-baseline machinery,
``pipeline.nn.baselines.train_direct_model``) regresses the DFT negative-frequency fraction; a material is called
unstable when the prediction exceeds a threshold, swept on the validation split. Validation only: nothing here reads
the test ids. Writes ``benchmarks/results/stability_direct[_<loss>][_x<members>].json`` (l1 and one member: no
suffix).

    python benchmarks/stability_direct.py --run results/property_loss
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from stability_threshold import TARGET_ACCURACY, TARGET_RECALL, sweep  # noqa: E402

from pipeline.config import schema_node  # noqa: E402
from pipeline.nn.baselines import train_direct_model  # noqa: E402
from pipeline.nn.model import ModelConfig  # noqa: E402
from pipeline.nn.train import TrainConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--run", type=Path, default=Path("results/property_loss"), help="a run with graphs/ and properties/"
    )
    p.add_argument("--preset", default="cpu_small")
    p.add_argument("--loss", default="l1", choices=["l1", "mse"])
    p.add_argument(
        "--members", type=int, default=1, help="a seed ensemble: members with seeds 0..n-1, mean prediction"
    )
    p.add_argument("--work", type=Path, default=Path("results/stability_direct"))
    a = p.parse_args(argv)
    model_cfg = ModelConfig.from_config({"preset": a.preset})
    t0 = time.perf_counter()
    val_shards = [str(a.run / "graphs/val/shard-0.h5")]
    preds = []
    for seed in range(a.members):
        train_cfg = TrainConfig.from_config({"seed": seed, "cache": True, "loss": a.loss}, preset=a.preset)
        member = train_direct_model(
            "negative_fraction",
            str(a.run / "properties/properties.parquet"),
            [str(a.run / "graphs/train/shard-0.h5")],
            val_shards,
            val_shards,  # "test" of the direct model = the validation split: predictions to choose on
            str(a.work / f"member-{seed}"),
            model_cfg,
            train_cfg,
        )
        preds.append(member.set_index("jid").iloc[:, 0])
    pred = pd.concat(preds, axis=1).mean(axis=1)
    wall = time.perf_counter() - t0
    props = pd.read_parquet(
        a.run / "properties/properties.parquet", columns=["jid", "source", "negative_fraction"]
    )
    dft = props[props["source"] == "dft"].drop_duplicates("jid").set_index("jid")["negative_fraction"]
    ids = [j for j in pred.index if j in dft.index]
    unstable = float(schema_node("properties.unstable_fraction")["default"])
    rows = sweep(dft.loc[ids].to_numpy(), np.clip(pred.loc[ids].to_numpy(), 0, None), unstable)
    meets = [r for r in rows if r["accuracy"] >= TARGET_ACCURACY and r["unstable_recall"] >= TARGET_RECALL]
    result = {
        "what": "direct ALIGNN regression of the DFT negative-frequency fraction, thresholded; validation only",
        "preset": a.preset,
        "loss": a.loss,
        "epochs": train_cfg.epochs,
        "members": a.members,
        "train_wall_s": round(wall, 1),
        "n_val": len(ids),
        "n_val_unstable": int((dft.loc[ids] > unstable).sum()),
        "val_negative_fraction_mae": float(np.abs(pred.loc[ids] - dft.loc[ids]).mean()),
        "sweep": rows,
        "thresholds_meeting_both_targets_on_val": [r["threshold"] for r in meets],
    }
    name = (
        "stability_direct"
        + ("" if a.loss == "l1" else f"_{a.loss}")
        + ("" if a.members == 1 else f"_x{a.members}")
    )
    out = write_result(name, result)
    for r in rows:
        print(
            f"threshold {r['threshold']:.3f}: val accuracy {r['accuracy']:.3f}, recall {r['unstable_recall']:.2f}"
        )
    print("meets both on val:", result["thresholds_meeting_both_targets_on_val"], "->", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
