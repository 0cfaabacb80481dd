"""train stage: fit one ALIGNN DOS model (an ensemble member) on graph shards -> results/train/member-{i}/.

  python -m pipeline train --train-shards results/graphs/train/shard-*.h5 --val-shards results/graphs/val/shard-*.h5 \\
      --out-dir results/train/member-0 [--member 0] [--device auto] [--threads 8] [--no-progress] \\
      [--set model.preset=cpu_small] [--set train.epochs=80] [--set train.seed=0]

Outputs (in --out-dir):
- model.pt: the best-on-validation weights with the model settings (what predict loads);
- history.parquet: one row per epoch (schema pipeline.schemas.TRAIN_HISTORY);
- checkpoint.pt: the state after the last finished epoch (model, optimizer, scheduler, RNG, early-stopping
  counters, history). A run that is killed and restarted with the same settings resumes from it and finishes with
  the same weights as an uninterrupted run (batch order depends only on the seed and the epoch number). A
  truncated or corrupt checkpoint is moved to checkpoint.pt.corrupt (with a warning) and training starts over.

Member i of a seed ensemble (train.ensemble) trains with seed train.seed + i.

Model files are data, not code: both files hold tensors and plain values only and are read with
torch.load(weights_only=True) (pipeline.nn.modelfile); a file that holds anything else is refused. model.pt
records the provenance of its inputs (pipeline.data.provenance: k, cutoff, atom features, DOS grid, copied from the
training shards, which must all agree, plus the model's radial-basis settings); predict checks shards against it.

Device: CUDA when available (--device overrides); train.precision bf16 or fp16 (CUDA) trains under
torch.autocast (pipeline.nn.precision).
Shards are read lazily in blocks of 1,024 graphs (pipeline.data.loader), so memory stays bounded whatever the
dataset size, unless train.cache: true keeps the decoded graphs in memory (small datasets, fewer reads).
Settings: model.preset (paper, cpu_medium, cpu_small, demo; see pipeline/nn/presets.py) supplies the model and
training values that have no schema default; keys in the model/train config sections override it.

Library: pipeline.nn.train (TrainConfig, fit), pipeline.nn.model (ModelConfig).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace

from pipeline.config import ConfigNode
from pipeline.data.provenance import ProvenanceError
from pipeline.nn.inference import pick_device
from pipeline.nn.model import ModelConfig
from pipeline.nn.modelfile import ModelFileError
from pipeline.nn.presets import FilledFromPreset
from pipeline.nn.train import NoTrainingDataError, TrainConfig, train_member
from pipeline.runtime import tune_malloc_for_torch
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(FilledFromPreset, ConfigNode):
    """What the train stage reads: the ``model`` and ``train`` sections (``model.preset`` fills the rest)."""

    model: ModelConfig
    train: TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("train", __doc__)
    p.add_argument("--train-shards", nargs="+", required=True, help="HDF5 graph shards of the training split")
    p.add_argument("--val-shards", nargs="+", required=True, help="HDF5 graph shards of the validation split")
    p.add_argument("--out-dir", required=True, help="writes model.pt, history.parquet, checkpoint.pt here")
    common.add_device(p)
    p.add_argument(
        "--member",
        type=common.non_negative_int,
        default=0,
        help="ensemble member to train (0..train.ensemble-1): trains with seed train.seed + member",
    )
    p.add_argument(
        "--threads",
        type=common.non_negative_int,
        default=0,
        help="torch CPU threads (the Snakemake job's; 0: train.threads, or torch's default when that is 0 too)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no tqdm bars (per-epoch lines are still printed)"
    )
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    train_cfg = replace(settings.train, threads=a.threads) if a.threads else settings.train
    tune_malloc_for_torch()  # see pipeline/runtime.py
    try:
        result = train_member(
            settings.model,
            train_cfg,
            a.train_shards,
            a.val_shards,
            a.out_dir,
            a.member,
            pick_device(a.device),
            progress=not a.no_progress,
        )
    except (
        NoTrainingDataError,
        ModelFileError,
        ProvenanceError,
    ) as e:  # no data, an unsafe checkpoint.pt, ...
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"best val MAE {result.best_val_mae:.5f} at epoch {result.best_epoch} of {result.epochs_run}; "
        f"model -> {result.model_path}",
        file=sys.stderr,
    )
    return 0
