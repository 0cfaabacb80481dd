"""Seed ensembles (the ensemble stage's library; the CLI is :mod:`pipeline.stages.ensemble`): combine the
independently trained members into one ``model.pt``.

``train.ensemble: N`` trains N models that differ only in their seed (member i: ``train.seed + i``), one train job
each (in parallel on a cluster), into ``results/train/member-{i}/``. :func:`combine` writes

- ``results/train/model.pt``: every member's best weights with the shared architecture; predict loads it as one
  model whose output is the members' mean (:class:`pipeline.nn.model.EnsembleALIGNN`; one member = a plain ALIGNN);
- ``results/train/history.parquet``: the members' histories stacked (``member`` column, schema TRAIN_HISTORY).

Given validation shards it also scores each member and the ensemble on the validation split and logs the numbers
(stored in model.pt as ``val_mae_members`` / ``val_mae``). Averaging seeds is the cheapest accuracy gain for a
small training set: the README's "Measured results" table gives the test MAE of the members alone and of the mean
of the first 1, 2, ... of them for the accuracy configuration (config/shared_accuracy.yaml).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipeline.data.provenance import InputProvenance, agreed, check_shard
from pipeline.io import atomic_path, write_parquet
from pipeline.nn.inference import evaluate, model_from_checkpoint
from pipeline.nn.model import EnsembleALIGNN
from pipeline.nn.modelfile import ModelFileError, read_checkpoint
from pipeline.schemas import TRAIN_HISTORY


def _load(path: str | Path) -> dict[str, Any]:
    ckpt = read_checkpoint(path)  # data only: pipeline/nn/modelfile.py
    if "state_dict" not in ckpt:
        raise ModelFileError(
            f"{path} is not a single trained model (no state_dict); pass member-*/model.pt files"
        )
    return ckpt


def combine(
    member_models: Sequence[str | Path],
    member_histories: Sequence[str | Path],
    out_dir: str | Path,
    val_shards: Sequence[str | Path] = (),
    batch_size: int | None = None,
    accelerator: str | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/model.pt`` and ``out_dir/history.parquet`` from the members'; return the model.pt dict.

    With ``val_shards``, the members and their mean are scored on them (:func:`score`) in batches of
    ``batch_size`` (``predict.batch_size``; required then), the models running with ``accelerator``
    (``model.accelerator``; None: the schema default)."""
    if not member_models:
        raise ValueError("no member models given")
    if val_shards and batch_size is None:
        raise ValueError("scoring the members on validation shards needs a batch_size")
    ckpts = [_load(p) for p in member_models]
    configs = {repr(sorted(c["model_config"].items())) for c in ckpts}
    if len(configs) > 1:
        raise ValueError(f"members {list(map(str, member_models))} have different architectures")
    seeds = [c["train_config"]["seed"] for c in ckpts]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"members share a seed ({seeds}): they would be the same model")
    inputs = agreed(
        [
            (str(p), InputProvenance.from_mapping(c.get("provenance")))
            for p, c in zip(member_models, ckpts, strict=True)
        ],
        "the ensemble members",
    )
    if inputs.unknown() and not val_shards:  # with val shards, _score's check says so
        print(
            f"warning: the members do not record {', '.join(inputs.unknown())} of their inputs (model files "
            "from before provenance was recorded); predict cannot check shards against them",
            file=sys.stderr,
        )
    combined: dict[str, Any] = {
        "model_config": ckpts[0]["model_config"],
        "train_config": ckpts[0]["train_config"] | {"seed": min(seeds)},
        "provenance": ckpts[0].get("provenance", inputs.to_dict()),
        "members": [
            {
                "state_dict": c["state_dict"],
                "seed": c["train_config"]["seed"],
                "best_epoch": c["best_epoch"],
                "best_val_mae": c["best_val_mae"],
            }
            for c in ckpts
        ],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.pt"
    if val_shards:
        combined["val_mae_members"], combined["val_mae"] = score(
            combined, val_shards, batch_size, inputs, str(model_path), accelerator
        )
        print(
            "val MAE of the members "
            + " / ".join(f"{v:.5f}" for v in combined["val_mae_members"])
            + f"; of their mean {combined['val_mae']:.5f}",
            file=sys.stderr,
        )
    with atomic_path(model_path) as tmp:
        torch.save(combined, tmp)
    history = pd.concat([pd.read_parquet(p) for p in member_histories], ignore_index=True)
    history = history.sort_values(["member", "epoch"], kind="stable").reset_index(drop=True)
    write_parquet(history, out / "history.parquet", TRAIN_HISTORY)
    print(f"{len(ckpts)} member(s), seeds {seeds} -> {model_path}", file=sys.stderr)
    return combined


def score(
    combined: dict[str, Any],
    val_shards: Sequence[str | Path],
    batch_size: int,
    inputs: InputProvenance,
    name: str,
    accelerator: str | None,
) -> tuple[list[float], float]:
    """Validation spectral MAE of each member and of the ensemble (members' mean) of the ``combined`` model.pt
    dict (``name``: its path, for messages); shards built otherwise than ``inputs`` are refused."""
    from pipeline.data.loader import ShardGraphs

    data = ShardGraphs([str(p) for p in val_shards], cache=True)
    for reader in data.readers:  # refuse shards built otherwise than the members' inputs
        for line in check_shard(reader.path, reader.provenance, name, inputs):
            print(line, file=sys.stderr)
    device = torch.device("cpu")
    model = model_from_checkpoint(combined, device, accelerator)
    members = list(model.members) if isinstance(model, EnsembleALIGNN) else [model]
    scores = [evaluate(m, data.epoch_batches(batch_size), device)["mae"] for m in members]
    ensemble = (
        evaluate(model, data.epoch_batches(batch_size), device)["mae"] if len(members) > 1 else scores[0]
    )
    data.close()
    return scores, ensemble
