"""Predictions of a trained model over graph shards (the predict stage's library; the CLI is
:mod:`pipeline.stages.predict`): :func:`predict_shard` writes one shard's PREDICTIONS table and its rejects,
:func:`gather` concatenates a set's shards. The model runs through :func:`pipeline.nn.inference.predict_batches`.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.config import ConfigNode
from pipeline.data.provenance import InputProvenance, check_shard
from pipeline.io import rejects_frame, write_parquet, write_rejects
from pipeline.nn import inference
from pipeline.nn.model import split_outputs
from pipeline.nn.modelfile import read_checkpoint
from pipeline.schemas import PREDICTIONS, REJECTS


@dataclass(frozen=True)
class PredictSettings(ConfigNode):
    """The ``predict`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml). ``sets`` and
    ``model`` choose what the workflow predicts with what; a shard job uses ``batch_size`` and ``precision``."""

    KEY: ClassVar[str] = "predict"
    sets: tuple[str, ...]
    model: str | None
    batch_size: int
    precision: str


def file_hash(path: str | Path) -> str:
    """sha256 (first 16 hex) of a file: the ``model_id`` of predictions."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def predict_shard(
    model_path: str | Path,
    shard: str | Path,
    set_name: str,
    out: str | Path,
    settings: PredictSettings,
    accelerator: str,
    device: torch.device,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict every graph of one shard with ``settings.batch_size`` and ``settings.precision``, the model built
    to run with ``accelerator`` (``model.accelerator``); write ``out`` (PREDICTIONS) and ``<out>.rejects.parquet``.

    Raises :class:`pipeline.nn.modelfile.ModelFileError` (not a plain-data model file),
    :class:`pipeline.data.provenance.ProvenanceError` (a shard built otherwise than the model's training shards) or
    ``ValueError`` (e.g. fp16 without CUDA)."""
    from pipeline.data.loader import ShardGraphs

    ckpt = read_checkpoint(
        model_path, map_location=device
    )  # data only, never code (pipeline/nn/modelfile.py)
    data = ShardGraphs([shard])
    model_inputs = InputProvenance.from_mapping(ckpt.get("provenance"))
    for line in check_shard(str(shard), data.readers[0].provenance, str(model_path), model_inputs):
        print(line, file=sys.stderr)
    model = inference.model_from_checkpoint(ckpt, device, accelerator)
    model_id = file_hash(model_path)
    bar = tqdm(
        total=len(data),
        desc=f"predict {Path(shard).name}",
        unit="graph",
        disable=None if progress else True,  # None: a bar only on a terminal
        mininterval=1.0,
    )
    t0 = time.perf_counter()
    ids, outputs = inference.predict_batches(
        model, data.epoch_batches(settings.batch_size), device, settings.precision, progress=bar
    )
    bar.close()
    data.close()
    preds, head = split_outputs(outputs, model.config)
    finite = np.isfinite(outputs).all(axis=1) if len(ids) else np.zeros(0, bool)
    rejects = [
        (jid, "predict", "prediction is not finite (NaN/inf)")
        for jid, ok in zip(ids, finite, strict=True)
        if not ok
    ]
    keep = np.flatnonzero(finite)
    table = pa.table(
        {
            "jid": pa.array([ids[i] for i in keep], pa.string()),
            "split": pa.array([set_name] * len(keep), pa.string()),
            "dos_pred": pa.FixedSizeListArray.from_arrays(
                pa.array(preds[keep].reshape(-1), pa.float32()), preds.shape[1]
            )
            if len(keep)
            else pa.array([], PREDICTIONS.field("dos_pred").type),
            "model_id": pa.array([model_id] * len(keep), pa.string()),
            "negative_fraction_head": pa.array(
                np.clip(head[keep], 0.0, 1.0) if head is not None else [None] * len(keep), pa.float32()
            ),
        }
    )
    write_parquet(table, out, PREDICTIONS)
    write_rejects(rejects, rejects_path(out))
    print(
        f"{shard}: {len(keep)} predictions, {len(rejects)} rejected, {len(ids) / max(time.perf_counter() - t0, 1e-9):.0f}"
        f" graphs/s, model {model_id} -> {out}",
        file=sys.stderr,
    )
    return table.to_pandas()


def rejects_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".rejects.parquet")


def gather(inputs: list[str | Path], out: str | Path) -> pa.Table:
    """Concatenate per-shard predictions (and their rejects) into one table per set, sorted by jid."""
    tables = [pq.read_table(p) for p in inputs]
    table = pa.concat_tables(tables).sort_by("jid") if tables else PREDICTIONS.empty_table()
    ids = table.column("jid").to_pylist()
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate ids across shards, e.g. {dup}: were shards built twice?")
    models = set(table.column("model_id").to_pylist())
    if len(models) > 1:
        raise ValueError(f"shards were predicted by different models {sorted(models)}; rerun predict")
    write_parquet(table, out, PREDICTIONS)
    rejected = [pq.read_table(rejects_path(p)).to_pandas() for p in inputs if rejects_path(p).exists()]
    rows = pd.concat(rejected) if rejected else rejects_frame([])
    write_parquet(pa.Table.from_pandas(rows, preserve_index=False), rejects_path(out), REJECTS)
    print(f"{len(inputs)} shards -> {table.num_rows} predictions -> {out}", file=sys.stderr)
    return table
