"""ensemble stage: combine the independently trained members of a seed ensemble into one model.pt.

  python -m pipeline ensemble --models results/train/member-*/model.pt \\
      --histories results/train/member-*/history.parquet --out-dir results/train \\
      [--val-shards results/graphs/val/shard-*.h5] [--threads 2] [--set predict.batch_size=64]

train.ensemble: N trains N models that differ only in their seed (member i: train.seed + i), one train job each
(in parallel on a cluster), into results/train/member-{i}/. This stage writes

- results/train/model.pt: every member's best weights with the shared architecture; predict loads it as one
  model whose output is the members' mean (pipeline.nn.model.EnsembleALIGNN; one member = a plain ALIGNN);
- results/train/history.parquet: the members' histories stacked (member column, schema TRAIN_HISTORY).

With --val-shards it also scores each member and the ensemble on the validation split (predict.batch_size graphs
at a time, the models running with model.accelerator) and logs the numbers (stored in model.pt as
val_mae_members / val_mae). Averaging seeds is the cheapest accuracy gain for a small training set: the README's
"Measured results" table gives the test MAE of the members alone and of the mean of the first 1, 2, ... of them
for the accuracy configuration (config/shared_accuracy.yaml).

Library: pipeline.nn.ensemble (combine).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from pipeline.config import ConfigNode
from pipeline.data.provenance import ProvenanceError
from pipeline.nn.ensemble import combine
from pipeline.nn.model import ModelConfig
from pipeline.nn.modelfile import ModelFileError
from pipeline.nn.predict import PredictSettings
from pipeline.nn.presets import FilledFromPreset
from pipeline.runtime import tune_malloc_for_torch
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(FilledFromPreset, ConfigNode):
    """What the ensemble stage reads: ``predict.batch_size`` and ``model.accelerator`` (for scoring the members
    on the validation shards; the architecture comes from the member files)."""

    predict: PredictSettings
    model: ModelConfig


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("ensemble", __doc__)
    p.add_argument("--models", nargs="+", required=True, help="member-*/model.pt of the train jobs")
    p.add_argument("--histories", nargs="+", required=True, help="member-*/history.parquet of the train jobs")
    p.add_argument("--out-dir", required=True, help="writes model.pt and history.parquet here")
    p.add_argument(
        "--val-shards", nargs="*", default=[], help="validation shards: log member/ensemble val MAE"
    )
    common.add_threads(p)
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if len(a.models) != len(a.histories):
        p.error(f"argument --histories: {len(a.histories)} given for {len(a.models)} --models")
    settings = common.parse_settings(p, a, Settings)
    tune_malloc_for_torch()  # see pipeline/runtime.py
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    try:
        combine(
            a.models,
            a.histories,
            a.out_dir,
            a.val_shards,
            batch_size=settings.predict.batch_size,
            accelerator=settings.model.accelerator,
        )
    except (ModelFileError, ProvenanceError) as e:  # a member that is not plain data, mixed provenance
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
