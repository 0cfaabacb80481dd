"""Loss variants scored on the validation split only (model selection; the test ids are not touched here).

Each variant trains one ``cpu_small`` member (seed 0, the accuracy configuration's settings) on the official
train split of the ../shared structures and reports, for its best-validation-epoch weights on the 190 val ids:
spectral MAE, C_V(300 K) and S_vib(300 K) MAE in J/(mol K) (materials stable in both, as the evaluate stage),
stability accuracy and the recall of the unstable class. Results go to
``benchmarks/results/accuracy_variants.json`` with the machine stamp; every variant tried is kept there.

    python benchmarks/accuracy_variants.py --graphs results/ship/graphs --dataset results/ship/dos/dataset.parquet
    python benchmarks/accuracy_variants.py ... --variants spectral cv_s   # a subset

Graph shards and the dataset come from the stage commands (fetch, dos, featurize of the train and val splits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, write_result  # noqa: E402

from pipeline.data.loader import ShardGraphs  # noqa: E402
from pipeline.nn.inference import load_model, predict_batches  # noqa: E402
from pipeline.nn.model import ModelConfig, split_outputs  # noqa: E402
from pipeline.nn.train import TrainConfig, fit  # noqa: E402
from pipeline.physics import thermo  # noqa: E402
from pipeline.physics.properties import PropertiesSettings  # noqa: E402
from pipeline.runtime import tune_malloc_for_torch  # noqa: E402

#: name -> train-section overrides on top of the accuracy configuration (cpu_small)
VARIANTS: dict[str, dict] = {
    "spectral": {},
    "cv_s": {"weight_cv": 1.0, "weight_s_vib": 0.3},
    "cv_s_negative": {"weight_cv": 1.0, "weight_s_vib": 0.3, "weight_negative": 1.0},
    "negative": {"weight_negative": 1.0},
    # tried after the choice above (still validation only): a heavier stability term, lighter property terms, and
    # the wider cpu_medium architecture (its "model" key: model-section overrides) with the chosen loss
    "cv_s_negative3": {"weight_cv": 1.0, "weight_s_vib": 0.3, "weight_negative": 3.0},
    "cv_s_half_negative": {"weight_cv": 0.5, "weight_s_vib": 0.15, "weight_negative": 1.0},
    "medium_spectral": {"model": {"alignn_layers": 3, "gcn_layers": 3, "hidden_features": 128}},
    "medium_cv_s_negative": {
        "model": {"alignn_layers": 3, "gcn_layers": 3, "hidden_features": 128},
        "weight_cv": 1.0,
        "weight_s_vib": 0.3,
        "weight_negative": 1.0,
    },
    # an exponential moving average of the weights (train.ema_decay), with and without the chosen property terms
    "spectral_ema": {"ema_decay": 0.999},
    "cv_s_negative_ema": {"weight_cv": 1.0, "weight_s_vib": 0.3, "weight_negative": 1.0, "ema_decay": 0.999},
    # a stability head (model.stability_head) on the chosen loss, at two weights of its term; its calls are swept
    # over thresholds on the head's value (head_sweep)
    "cv_s_negative_head": {
        "model": {"stability_head": "shared"},
        "weight_cv": 1.0,
        "weight_s_vib": 0.3,
        "weight_negative": 1.0,
        "weight_stability_head": 1.0,
    },
    "cv_s_negative_head5": {
        "model": {"stability_head": "shared"},
        "weight_cv": 1.0,
        "weight_s_vib": 0.3,
        "weight_negative": 1.0,
        "weight_stability_head": 5.0,
    },
}
#: thresholds on a stability head's predicted negative fraction (unstable above)
HEAD_THRESHOLDS = (0.1, 0.08, 0.06, 0.05, 0.04, 0.03)


def validation_scores(pred: np.ndarray, truth: np.ndarray, n_atoms: np.ndarray) -> dict[str, float]:
    unstable_fraction = PropertiesSettings.from_config({}).unstable_fraction  # the properties stage's default
    stable_t, stable_p = thermo.is_stable(truth, unstable_fraction), thermo.is_stable(pred, unstable_fraction)
    both = stable_t & stable_p
    pt = thermo.thermal_properties(truth[both], n_atoms[both], [300.0])
    pp = thermo.thermal_properties(pred[both], n_atoms[both], [300.0])
    unstable = ~stable_t
    return {
        "val_spectral_mae": float(np.abs(pred - truth).mean()),
        "val_cv_300k_mae_j_per_mol_k": float(np.abs(pt.cv - pp.cv).mean()),
        "val_s_vib_300k_mae_j_per_mol_k": float(np.abs(pt.s_vib - pp.s_vib).mean()),
        "val_stability_accuracy": float((stable_t == stable_p).mean()),
        "val_unstable_recall": float((~stable_p[unstable]).mean()) if unstable.any() else float("nan"),
        "n_val": int(len(truth)),
        "n_val_unstable": int(unstable.sum()),
        "n_val_stable_both": int(both.sum()),
    }


def head_sweep(head: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Stability calls from a stability head (unstable: head value above a threshold) against the DFT definition
    (``benchmarks/stability_threshold.py``'s sweep, at HEAD_THRESHOLDS)."""
    from stability_threshold import (
        sweep,
    )  # imported here: that module imports validation_scores from this one

    unstable_fraction = PropertiesSettings.from_config({}).unstable_fraction
    return [
        {
            "threshold": r["threshold"],
            "val_stability_accuracy": r["accuracy"],
            "val_unstable_recall": r["unstable_recall"],
        }
        for r in sweep(thermo.negative_fraction(truth), head, unstable_fraction)
        if r["threshold"] in HEAD_THRESHOLDS
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--graphs", type=Path, default=Path("results/ship/graphs"), help="graphs/{train,val}/shard-0.h5"
    )
    p.add_argument("--dataset", type=Path, default=Path("results/ship/dos/dataset.parquet"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (quick looks only)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("results/accuracy_variants"))
    p.add_argument("--out", type=Path, default=RESULTS / "accuracy_variants.json")
    args = p.parse_args()
    tune_malloc_for_torch()
    torch.set_num_threads(args.threads)
    model_cfg = ModelConfig.from_config({"preset": "cpu_small"})
    base = TrainConfig.from_config(
        {"seed": 0, "cache": True, "threads": args.threads}, preset=model_cfg.preset
    )
    if args.epochs:
        base = replace(base, epochs=args.epochs)
    train = ShardGraphs([args.graphs / "train/shard-0.h5"], cache=True)
    val = ShardGraphs([args.graphs / "val/shard-0.h5"], cache=True)
    ds = pd.read_parquet(args.dataset).set_index("jid")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"results": {}}
    # rows of earlier runs keep the stamp of the run that measured them
    rows = {
        k: {**v, "machine": v.get("machine", previous.get("machine"))} for k, v in previous["results"].items()
    }
    for name in args.variants:
        overrides = dict(VARIANTS[name])
        variant_model = ModelConfig.from_config({"preset": "cpu_small", **overrides.pop("model", {})})
        cfg = replace(base, **overrides)
        t0 = time.perf_counter()
        result = fit(variant_model, cfg, train, val, args.work / name, train.ids, progress=False)
        model = load_model(result.model_path, "cpu", variant_model.accelerator)
        ids, out = predict_batches(model, val.epoch_batches(64), torch.device("cpu"), "fp32")
        pred, head = split_outputs(out, variant_model)
        truth = np.stack(ds.loc[ids, "dos"].to_numpy())
        n_atoms = ds.loc[ids, "n_atoms_per_fu"].to_numpy(dtype=float)
        rows[name] = {
            "train_overrides": VARIANTS[name],
            "epochs": cfg.epochs,
            "best_epoch": result.best_epoch,
            "train_wall_s": round(time.perf_counter() - t0, 1),
            "machine": machine(),  # each variant's own run (the file's stamp is the last run's)
            **validation_scores(pred, truth, n_atoms),
            **({"head_sweep": head_sweep(head, truth)} if head is not None else {}),
        }
        print(json.dumps({name: rows[name]}), flush=True)
        write_result("accuracy_variants", rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
