"""Accuracy check on real data: train a CPU preset on the ../shared structures (official split) and report the
spectral MAE on the test ids, next to the training-median and training-mean baselines.

Steps (each skipped when its output exists):
1. results/<run>/dos/dataset.parquet from the fetch + dos stages (config ``--config``: source=local, official split);
2. graph shards results/<run>/graphs/{train,val,test}/shard-0.h5 (``pipeline.data.graphs.build_graph`` +
   ``pipeline.data.shards.write_shard``; k/cutoff from the config's featurize section);
3. ``python -m pipeline train --member i`` equivalent (``pipeline.nn.train.fit``, seed train.seed + i) into
   results/<run>/train/member-{i}/ for each of the ``train.ensemble`` members, then ``python -m pipeline ensemble``
   (``pipeline.nn.ensemble.combine``) into results/<run>/train/model.pt;
4. test-set predictions and MAE of the ensemble (overall and per ``relaxation`` group) and of each member alone,
   written to results/<run>/accuracy.json. The wall time is the sum over members (sequential here; a cluster
   trains them in parallel).

    python benchmarks/accuracy_shared.py --config config/shared_accuracy.yaml
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.config import load_config
from pipeline.data.graphs import FeaturizationError, build_graph
from pipeline.data.loader import ShardGraphs
from pipeline.data.shards import write_shard
from pipeline.nn.ensemble import combine
from pipeline.nn.inference import load_model, pick_device, predict_batches
from pipeline.nn.model import EnsembleALIGNN, ModelConfig
from pipeline.nn.train import TrainConfig, fit
from pipeline.runtime import tune_malloc_for_torch


def build_shards(dataset: pd.DataFrame, graphs_dir: Path, k: int, cutoff: float, min_distance: float) -> None:
    for split in ("train", "val", "test"):
        path = graphs_dir / split / "shard-0.h5"
        if path.exists():
            continue
        rows = dataset[dataset.split == split]
        ids, graphs, targets = [], [], []
        for r in rows.itertuples():
            try:
                g = build_graph(
                    np.stack(r.lattice_mat),
                    np.stack(r.frac_coords),
                    list(r.elements),
                    k=k,
                    cutoff=cutoff,
                    min_distance=min_distance,
                )
            except FeaturizationError as e:
                print(f"{r.jid}: skipped ({e})", file=sys.stderr)
                continue
            ids.append(r.jid)
            graphs.append(g)
            targets.append(np.asarray(r.dos, dtype=np.float32))
        write_shard(path, ids, graphs, targets, meta={"split": split, "k": k, "cutoff": cutoff})
        print(f"{split}: {len(ids)} graphs -> {path}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="config/shared_accuracy.yaml")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    tune_malloc_for_torch()  # as the train stage does (pipeline/runtime.py)
    cfg = load_config(args.config)
    run = Path(cfg["results_dir"])
    dataset_path = run / "dos" / "dataset.parquet"
    if not dataset_path.exists():
        for cmd in (  # the stage commands, with the run's config file as their settings
            f"fetch --out-dir {run}/fetch --cache-dir {cfg['data_dir']}/raw --config {args.config}",
            f"dos --fetch-dir {run}/fetch --out-dir {run}/dos --config {args.config}",
        ):
            subprocess.run([sys.executable, "-m", "pipeline", *cmd.split()], check=True)
    dataset = pd.read_parquet(dataset_path)
    f = cfg["featurize"]
    build_shards(dataset, run / "graphs", f["k"], f["cutoff"], f["min_distance"])

    model_cfg = ModelConfig.from_config(cfg["model"])
    train_cfg = replace(TrainConfig.from_config(cfg["train"], preset=model_cfg.preset), threads=args.threads)
    train = ShardGraphs([run / "graphs/train/shard-0.h5"], cache=train_cfg.cache)
    val = ShardGraphs([run / "graphs/val/shard-0.h5"], cache=train_cfg.cache)
    t0 = time.perf_counter()
    results = []
    for member in range(train_cfg.ensemble):
        member_cfg = replace(train_cfg, seed=train_cfg.seed + member)
        out = run / "train" / f"member-{member}"
        results.append(fit(model_cfg, member_cfg, train, val, out, train.ids, progress=False, member=member))
    wall = time.perf_counter() - t0
    combine(
        [r.model_path for r in results],
        [r.model_path.with_name("history.parquet") for r in results],
        run / "train",
        [run / "graphs/val/shard-0.h5"],
        batch_size=cfg["predict"]["batch_size"],
        accelerator=model_cfg.accelerator,
    )

    device = pick_device()
    model = load_model(run / "train" / "model.pt", device, model_cfg.accelerator)
    test = ShardGraphs([run / "graphs/test/shard-0.h5"])
    ids, preds = predict_batches(model, test.epoch_batches(64), device, "fp32")
    truth = dataset.set_index("jid").loc[ids]
    y = np.stack(truth.dos.values)
    per_material = np.abs(preds - y).mean(axis=1)
    members = list(model.members) if isinstance(model, EnsembleALIGNN) else [model]
    member_preds = []
    for m_ in members:
        m_ids, m_preds = predict_batches(m_, test.epoch_batches(64), device, "fp32")
        assert m_ids == ids
        member_preds.append(m_preds)
    member_mae = [float(np.abs(p_ - y).mean()) for p_ in member_preds]
    # how the ensemble size matters: the mean of the first n members, n = 1..ensemble
    first_n_mae = [
        float(np.abs(np.mean(member_preds[:n], axis=0) - y).mean()) for n in range(1, len(members) + 1)
    ]
    train_y = np.stack(dataset[dataset.split == "train"].dos.values)
    report = {
        "config": args.config,
        "preset": cfg["model"].get("preset"),
        "model": {k: v for k, v in model_cfg.to_config().items() if k != "preset"},
        "train": train_cfg.to_config(),
        "n_test": len(ids),
        "test_mae": float(per_material.mean()),
        "test_mae_by_relaxation": {
            g: float(per_material[(truth.relaxation == g).to_numpy()].mean())
            for g in sorted(truth.relaxation.unique())
        },
        "baseline_train_median_mae": float(np.abs(y - np.median(train_y, 0)).mean()),
        "baseline_train_mean_mae": float(np.abs(y - train_y.mean(0)).mean()),
        "ensemble": train_cfg.ensemble,
        "test_mae_members": member_mae,
        "test_mae_first_n_members": first_n_mae,
        "best_epoch_members": [r.best_epoch for r in results],
        "epochs_run_members": [r.epochs_run for r in results],
        "best_val_mae_members": [r.best_val_mae for r in results],
        "train_wall_s_this_invocation": wall,
        "train_wall_s_sum_of_epochs": float(sum(r.history.seconds.sum() for r in results)),
        "threads": args.threads,
        "torch_threads": torch.get_num_threads(),
    }
    (run / "accuracy.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
