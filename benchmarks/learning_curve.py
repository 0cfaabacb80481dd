"""What more training spectra would buy: validation spectral MAE against the number of training graphs.

Trains one ``cpu_small`` member (the accuracy configuration, seed 0, with ``train.ema_decay`` as given) on seeded
nested subsets of the official train split of the ../shared structures (fractions of its 1,186 graphs), scores the
190 val ids, and fits MAE = a * N^-alpha through the points. Validation only; the test ids are not touched. Results
go to ``benchmarks/results/learning_curve.json`` with the machine stamp (rows of earlier runs are kept).

    python benchmarks/learning_curve.py --graphs results/property_loss/graphs --fractions 0.25 0.5 1.0
    python benchmarks/learning_curve.py --fractions   # no training: refit the rows already in the JSON

``extrapolation`` applies the fitted exponent to test numbers measured elsewhere (``--test-mae NAME=MAE``, by
default the two 5-member ensembles of README "Measured results"): the factor of training spectra that would bring
each to the spectral target, (MAE / target)^(1/alpha), assuming the validation slope holds on test and beyond N.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine, write_result  # noqa: E402

from pipeline.data.shards import ShardReader  # noqa: E402
from pipeline.nn.inference import load_model, predict_batches  # noqa: E402
from pipeline.nn.model import ModelConfig  # noqa: E402
from pipeline.nn.train import InMemoryGraphs, TrainConfig, fit  # noqa: E402
from pipeline.runtime import tune_malloc_for_torch  # noqa: E402


def records(path: Path) -> list:
    with ShardReader(path) as reader:
        return [reader[i] for i in range(len(reader))]


def power_law(points: list[tuple[int, float]]) -> dict[str, float] | None:
    """Least-squares fit of log MAE = log a - alpha log N (None with fewer than two sizes)."""
    if len({n for n, _ in points}) < 2:
        return None
    n, mae = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    slope, intercept = np.polyfit(n, mae, 1)
    return {"a": float(np.exp(intercept)), "alpha": float(-slope)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--graphs", type=Path, default=Path("results/property_loss/graphs"))
    p.add_argument("--fractions", type=float, nargs="*", default=[0.25, 0.5, 1.0])
    p.add_argument(
        "--test-mae",
        nargs="*",
        default=["spectral_loss_x5=0.0693", "property_loss_x5=0.0745"],
        help="NAME=MAE of models measured on the test ids, for the extrapolation",
    )
    p.add_argument(
        "--target", type=float, default=0.066, help="the spectral MAE target on the test ids (#16)"
    )
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--subset-seed", type=int, default=0, help="seeds which training graphs a fraction keeps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("results/learning_curve"))
    p.add_argument("--out", type=Path, default=RESULTS / "learning_curve.json")
    args = p.parse_args()
    tune_malloc_for_torch()
    torch.set_num_threads(args.threads)
    model_cfg = ModelConfig.from_config({"preset": "cpu_small"})
    cfg = TrainConfig.from_config(
        {"seed": 0, "cache": True, "threads": args.threads, "ema_decay": args.ema_decay}, preset="cpu_small"
    )
    train_all = records(args.graphs / "train/shard-0.h5")
    val = InMemoryGraphs(records(args.graphs / "val/shard-0.h5"))
    # nested subsets: a smaller fraction keeps a prefix of the same seeded permutation
    order = np.random.default_rng(args.subset_seed).permutation(len(train_all))
    previous = json.loads(args.out.read_text()) if args.out.exists() else {"results": {"rows": {}}}
    rows = dict(previous["results"]["rows"])
    for fraction in args.fractions:
        n = max(2, round(fraction * len(train_all)))
        subset = [train_all[i] for i in sorted(order[:n])]
        t0 = time.perf_counter()
        result = fit(
            model_cfg,
            cfg,
            InMemoryGraphs(subset),
            val,
            args.work / f"n{n}",
            [r.id for r in subset],
            progress=False,
        )
        model = load_model(result.model_path, "cpu", model_cfg.accelerator)
        _, pred = predict_batches(model, val.epoch_batches(64, None), torch.device("cpu"), "fp32")
        truth = np.stack([r.target for r in val.records])
        rows[str(n)] = {
            "n_train": n,
            "fraction": fraction,
            "best_epoch": result.best_epoch,
            "val_spectral_mae": float(np.abs(pred - truth).mean()),
            "train_wall_s": round(time.perf_counter() - t0, 1),
            "machine": machine(),
        }
        print(json.dumps(rows[str(n)]), flush=True)
    fit_ = power_law([(r["n_train"], r["val_spectral_mae"]) for r in rows.values()])
    n_full = max(r["n_train"] for r in rows.values())
    extrapolation = {}
    for item in args.test_mae if fit_ else []:
        name, mae = item.split("=")
        factor = (float(mae) / args.target) ** (1 / fit_["alpha"])
        extrapolation[name] = {"test_mae": float(mae), "factor": factor, "n_train": round(factor * n_full)}
    out = {
        "what": "validation spectral MAE (190 val ids) of one cpu_small member against the training-set size",
        "ema_decay": args.ema_decay,
        "subset_seed": args.subset_seed,
        "rows": rows,
        "power_law": fit_,
        "target": args.target,
        "extrapolation": extrapolation,
    }
    write_result("learning_curve", out, args.out)
    print(json.dumps({"power_law": fit_}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
