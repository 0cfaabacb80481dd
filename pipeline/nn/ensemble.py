"""ensemble stage: combine the independently trained members of a seed ensemble into one ``model.pt``.

``train.ensemble: N`` trains N models that differ only in their seed (member i: ``train.seed + i``), one train job
each (in parallel on a cluster), into ``results/train/member-{i}/``. This stage writes

- ``results/train/model.pt``: every member's best weights with the shared architecture; predict loads it as one
  model whose output is the members' mean (:class:`pipeline.nn.model.EnsembleALIGNN`; one member = a plain ALIGNN);
- ``results/train/history.parquet``: the members' histories stacked (``member`` column, schema TRAIN_HISTORY).

With ``--val-shards`` it also scores each member and the ensemble on the validation split and logs the numbers
(stored in model.pt as ``val_mae_members`` / ``val_mae``). Averaging seeds is the cheapest accuracy gain for a
small training set: the README's "Measured results" table gives the test MAE of the members alone and of the mean
of the first 1, 2, ... of them for the accuracy configuration (config/shared_accuracy.yaml).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipeline.io import atomic_path, write_parquet
from pipeline.nn.modelfile import ModelFileError, read_checkpoint
from pipeline.provenance import InputProvenance, ProvenanceError, agreed, check_shard
from pipeline.runtime import tune_malloc_for_torch
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
    batch_size: int = 64,
) -> dict[str, Any]:
    """Write ``out_dir/model.pt`` and ``out_dir/history.parquet`` from the members'; return the model.pt dict."""
    if not member_models:
        raise ValueError("no member models given")
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
        combined["val_mae_members"], combined["val_mae"] = _score(
            combined, val_shards, batch_size, inputs, str(model_path)
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


def _score(
    combined: dict[str, Any],
    val_shards: Sequence[str | Path],
    batch_size: int,
    inputs: InputProvenance,
    name: str,
) -> tuple[list[float], float]:
    """Validation spectral MAE of each member and of the ensemble (members' mean)."""
    from pipeline.data.loader import ShardGraphs
    from pipeline.nn.model import EnsembleALIGNN
    from pipeline.nn.train import evaluate, model_from_checkpoint

    data = ShardGraphs([str(p) for p in val_shards], cache=True)
    for reader in data.readers:  # refuse shards built otherwise than the members' inputs
        for line in check_shard(reader.path, reader.provenance, name, inputs):
            print(line, file=sys.stderr)
    model = model_from_checkpoint(combined)
    members = list(model.members) if isinstance(model, EnsembleALIGNN) else [model]
    device = torch.device("cpu")
    scores = [evaluate(m, data, batch_size, device)["mae"] for m in members]
    ensemble = evaluate(model, data, batch_size, device)["mae"] if len(members) > 1 else scores[0]
    data.close()
    return scores, ensemble


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import SchemaArgumentParser, schema_option

    p = SchemaArgumentParser(
        prog="python -m pipeline ensemble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", nargs="+", required=True, help="member-*/model.pt of the train jobs")
    p.add_argument("--histories", nargs="+", required=True, help="member-*/history.parquet of the train jobs")
    p.add_argument("--out-dir", required=True, help="writes model.pt and history.parquet here")
    p.add_argument(
        "--val-shards", nargs="*", default=[], help="validation shards: log member/ensemble val MAE"
    )
    schema_option(p, "--batch-size", key="predict.batch_size", help="graphs per batch when scoring")
    schema_option(p, "--threads", key="train.threads", help="torch CPU threads (0: torch default)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.models) != len(args.histories):
        parser.error(f"argument --histories: {len(args.histories)} given for {len(args.models)} --models")
    tune_malloc_for_torch()  # see pipeline/runtime.py
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        combine(args.models, args.histories, args.out_dir, args.val_shards, args.batch_size)
    except (ModelFileError, ProvenanceError) as e:  # a member that is not plain data, mixed provenance
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
