"""baselines stage: the direct ALIGNN baselines of the paper (Fig. 8a) -> results/baselines/direct_{split}.parquet.

  python -m pipeline baselines --properties results/properties/properties.parquet \\
      --train-shards results/graphs/train/shard-*.h5 --val-shards results/graphs/val/shard-*.h5 \\
      --test-shards results/graphs/test/shard-*.h5 --out results/baselines/direct_test.parquet \\
      --work-dir results/baselines/direct_models [--threads 8] [--set model.preset=cpu_small] [--set train.epochs=80]

The DOS model's architecture and preset (the model and train sections, as the train stage reads them) with a
one-value head, trained on DFT C_V(300 K) and S_vib(300 K) from the properties table (targets standardised with
the training mean and std, final ReLU off, best-on-validation weights); writes the test-set predictions in
physical units (DIRECT_PREDICTIONS schema) for the evaluate stage's --direct option. Model checkpoints per
quantity go to --work-dir/<quantity>/ (a killed run resumes there, as the train stage does).

Library: pipeline.nn.baselines (direct_baselines, train_direct_model).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from pipeline.config import ConfigNode
from pipeline.nn.baselines import direct_baselines
from pipeline.nn.model import ModelConfig
from pipeline.nn.presets import FilledFromPreset
from pipeline.nn.train import TrainConfig
from pipeline.runtime import tune_malloc_for_torch
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(FilledFromPreset, ConfigNode):
    """What the baselines stage reads: the ``model`` and ``train`` sections (``model.preset`` fills the rest)."""

    model: ModelConfig
    train: TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("baselines", __doc__)
    p.add_argument(
        "--properties", required=True, help="results/properties/properties.parquet (DFT rows used)"
    )
    p.add_argument("--train-shards", nargs="+", required=True, help="HDF5 graph shards of the training split")
    p.add_argument("--val-shards", nargs="+", required=True, help="HDF5 graph shards of the validation split")
    p.add_argument(
        "--test-shards", nargs="+", required=True, help="HDF5 graph shards of the split to predict"
    )
    p.add_argument(
        "--out", required=True, help="parquet of test predictions (jid, cv_300k_direct, s_vib_300k_direct)"
    )
    p.add_argument("--work-dir", required=True, help="model checkpoints per quantity go here")
    common.add_threads(p)
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)  # preset + overrides checked before any training
    tune_malloc_for_torch()  # see pipeline/runtime.py
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    direct_baselines(
        a.properties,
        a.train_shards,
        a.val_shards,
        a.test_shards,
        a.out,
        a.work_dir,
        settings.model,
        settings.train,
    )
    return 0
