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

:func:`attach_stability` puts separately trained stability models (direct models of the DFT negative-frequency
fraction, ``pipeline.nn.baselines.train_direct_model``) into an ensemble file as its members' separate stability
trunks (``model.stability_head: separate``), so that one file predicts the spectrum and a learned stability call.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipeline.data.provenance import InputProvenance, agreed, check_shard
from pipeline.io import atomic_path, write_parquet
from pipeline.nn.inference import evaluate, model_from_checkpoint
from pipeline.nn.model import EnsembleALIGNN, ModelConfig
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


def attach_stability(
    dos_model: str | Path,
    stability_models: Sequence[str | Path],
    target_mean: float,
    target_std: float,
    out: str | Path,
) -> dict[str, Any]:
    """Write ``out``: the ensemble file ``dos_model`` whose member i gets ``stability_models[i]`` as its separate
    stability trunk (``model.stability_head: separate``); return the model.pt dict.

    The stability models are one-value direct models of the negative-frequency fraction trained on targets
    standardised with (``target_mean``, ``target_std``) (:func:`pipeline.nn.baselines.training_scale`); their last
    linear layer is rescaled here (weight x std, bias x std + mean), exactly, so that the trunk outputs the fraction
    itself. They must have the DOS members' architecture with one output and no final ReLU, one per member."""
    dos = read_checkpoint(dos_model)
    members = dos.get("members") or [
        {k: dos[k] for k in ("state_dict", "best_epoch", "best_val_mae") if k in dos}
        | {"seed": dos["train_config"]["seed"]}
    ]
    if len(stability_models) != len(members):
        raise ValueError(
            f"{dos_model} has {len(members)} member(s) but {len(stability_models)} stability models"
        )
    config = ModelConfig.from_dict(dos["model_config"])
    if config.stability_head != "none":
        raise ValueError(f"{dos_model} already has a stability head ({config.stability_head})")
    trunk_config = replace(config, out_dim=1, final_relu=False).to_dict()
    joined, stab_train_configs = [], []
    for member, path in zip(members, stability_models, strict=True):
        stab = _load(path)
        stab_train_configs.append(stab["train_config"])
        if stab["model_config"] != trunk_config:
            raise ValueError(
                f"{path} is not a one-value model of the DOS members' architecture "
                f"({stab['model_config']} vs {trunk_config})"
            )
        trunk = dict(stab["state_dict"])
        trunk["head.weight"] = trunk["head.weight"] * target_std
        trunk["head.bias"] = trunk["head.bias"] * target_std + target_mean
        state = dict(member["state_dict"]) | {f"stability_trunk.{k}": v for k, v in trunk.items()}
        joined.append(
            member
            | {
                "state_dict": state,
                "stability_seed": stab["train_config"]["seed"],
                "stability_best_epoch": stab["best_epoch"],
            }
        )
    combined = {
        k: v for k, v in dos.items() if k not in ("state_dict", "best_epoch", "best_val_mae", "member")
    }
    combined |= {
        "model_config": replace(config, stability_head="separate").to_dict(),
        "members": joined,
        "stability": {
            "quantity": "negative_fraction",
            "target_mean": float(target_mean),
            "target_std": float(target_std),
            "models": [str(p) for p in stability_models],
            "train_config": stab_train_configs[0],
        },
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(combined, tmp)
    print(f"{len(joined)} member(s) with separate stability trunks -> {out}", file=sys.stderr)
    return combined
