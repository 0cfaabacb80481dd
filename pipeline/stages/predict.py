"""predict stage: DOS predictions of a trained model, scattered over graph shards and gathered per set.

Two sub-commands (Snakemake runs one ``shard`` job per shard, then one ``gather`` per set):

  python -m pipeline predict shard  --model results/train/model.pt --shard results/graphs/test/shard-0.h5 \\
                                    --split test --out results/predict/test/shard-0.parquet \\
                                    [--set predict.batch_size=64] [--set predict.precision=fp32] \\
                                    [--set model.accelerator=auto] [--device auto] [--threads 2]
  python -m pipeline predict gather --inputs results/predict/test/shard-*.parquet \\
                                    --out results/predict/test.parquet

``shard`` streams the shard block by block (``pipeline.data.loader``), so memory is bounded by the batch and block size,
not by the shard. Output rows follow ``pipeline.schemas.PREDICTIONS``: jid, split, the 66-bin predicted DOS (same
grid and max-normalisation as the training labels) and ``model_id``, the sha256 (first 16 hex) of the model file.
The model file is read as data only (``pipeline.nn.modelfile``) and runs with ``model.accelerator``; a shard whose
graphs were built otherwise than the model's training shards (k, cutoff, atom features, DOS grid:
``pipeline.data.provenance``) is refused, naming the key and both values; a model file from before provenance was
recorded is used with a warning that the shard could not be checked. A material whose prediction is not finite is
not written; it goes to ``<out>.rejects.parquet`` (jid, stage, reason) next to the output, and ``gather``
concatenates those into ``results/predict/{set}.rejects.parquet``.

``shard --split NAME`` is the set name written to the split column.

Library: pipeline.nn.predict (predict_shard, gather), pipeline.nn.inference (the batched inference).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from pipeline.config import ConfigNode
from pipeline.data.provenance import ProvenanceError
from pipeline.nn.inference import pick_device
from pipeline.nn.model import ModelConfig
from pipeline.nn.modelfile import ModelFileError
from pipeline.nn.predict import PredictSettings, gather, predict_shard
from pipeline.nn.presets import FilledFromPreset
from pipeline.runtime import tune_malloc_for_torch
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(FilledFromPreset, ConfigNode):
    """What the predict stage reads: the ``predict`` section (batch_size, precision) and ``model.accelerator``
    (the architecture comes from the model file)."""

    predict: PredictSettings
    model: ModelConfig


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("predict", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("shard", help="predict one graph shard")
    s.add_argument("--model", required=True, help="model.pt written by the train or ensemble stage")
    s.add_argument("--shard", required=True, help="HDF5 graph shard (results/graphs/{set}/shard-{i}.h5)")
    s.add_argument(
        "--split", required=True, help="set name written to the 'split' column (test, pool, ...; was --set)"
    )
    s.add_argument("--out", required=True, help="output parquet (PREDICTIONS schema)")
    common.add_device(s)
    common.add_threads(s)
    s.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one is drawn only on a terminal)"
    )
    common.add_settings_options(s, Settings)
    g = sub.add_parser("gather", help="concatenate per-shard predictions of one set")
    g.add_argument("--inputs", nargs="*", required=True, help="per-shard prediction parquets")
    g.add_argument("--out", required=True, help="results/predict/{set}.parquet")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    tune_malloc_for_torch()  # see pipeline/runtime.py
    if a.command == "gather":
        gather(a.inputs, a.out)
        return 0
    settings = common.parse_settings(p, a, Settings)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    try:
        predict_shard(
            a.model,
            a.shard,
            a.split,
            a.out,
            settings.predict,
            settings.model.accelerator,
            pick_device(a.device),
            progress=not a.no_progress,
        )
    except (
        ModelFileError,
        ProvenanceError,
        ValueError,
    ) as e:  # not a plain-data model file; shard built otherwise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
