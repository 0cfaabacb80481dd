"""predict stage: DOS predictions of a trained model, scattered over graph shards and gathered per set.

Two sub-commands (Snakemake runs one ``shard`` job per shard, then one ``gather`` per set):

  python -m pipeline predict shard  --model results/train/model.pt --shard results/graphs/test/shard-0.h5 \\
                                    --set test --out results/predict/test/shard-0.parquet
  python -m pipeline predict gather --inputs results/predict/test/shard-*.parquet \\
                                    --out results/predict/test.parquet

``shard`` streams the shard block by block (``pipeline.data.loader``), so memory is bounded by the batch and block size,
not by the shard. Output rows follow ``pipeline.schemas.PREDICTIONS``: jid, split, the 66-bin predicted DOS (same
grid and max-normalisation as the training labels) and ``model_id``, the sha256 (first 16 hex) of the model file.
The model file is read as data only (``pipeline.nn.modelfile``), and a shard whose graphs were built otherwise than
the model's training shards (k, cutoff, atom features, DOS grid: ``pipeline.provenance``) is refused, naming the
key and both values; a model file from before provenance was recorded is used with a warning that the shard could
not be checked. A material whose prediction is not finite is not written; it goes to ``<out>.rejects.parquet``
(jid, stage, reason) next to the output, and ``gather`` concatenates those into
``results/predict/{set}.rejects.parquet``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from pipeline.data.batch import GraphBatch
from pipeline.io import rejects_frame, write_parquet, write_rejects
from pipeline.nn.modelfile import ModelFileError, read_checkpoint
from pipeline.provenance import InputProvenance, ProvenanceError, check_shard
from pipeline.runtime import tune_malloc_for_torch
from pipeline.schemas import PREDICTIONS, REJECTS


def file_hash(path: str | Path) -> str:
    """sha256 (first 16 hex) of a file: the ``model_id`` of predictions."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@torch.no_grad()
def predict_batches(
    model: torch.nn.Module,
    batches: Iterable[GraphBatch],
    device: torch.device,
    progress: tqdm | None = None,
    precision: str = "fp32",
) -> tuple[list[str], np.ndarray]:
    """Run ``model`` (eval mode) over batches -> (ids, (n, out_dim) float32 predictions) in batch order;
    ``precision`` bf16/fp16 under ``torch.autocast`` (``pipeline.nn.precision``)."""
    from pipeline.nn.precision import autocast

    model.eval()
    context = autocast(precision, device)
    ids: list[str] = []
    outs: list[np.ndarray] = []
    for batch in batches:
        with context():
            pred = model(batch.to(device)).float().cpu().numpy()
        ids.extend(batch.ids)
        outs.append(pred)
        if progress is not None:
            progress.update(batch.n_graphs)
    if not outs:
        return ids, np.zeros((0, getattr(getattr(model, "config", None), "out_dim", 0)), np.float32)
    return ids, np.concatenate(outs).astype(np.float32)


def predict_shard(
    model_path: str | Path,
    shard: str | Path,
    set_name: str,
    out: str | Path,
    batch_size: int = 64,
    device: str = "auto",
    threads: int = 0,
    progress: bool = True,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Predict every graph of one shard; write ``out`` (PREDICTIONS) and ``<out>.rejects.parquet``."""
    from pipeline.data.loader import ShardGraphs
    from pipeline.nn.train import model_from_checkpoint, pick_device

    if threads > 0:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    ckpt = read_checkpoint(model_path, map_location=dev)  # data only, never code (pipeline/nn/modelfile.py)
    data = ShardGraphs([shard])
    model_inputs = InputProvenance.from_mapping(ckpt.get("provenance"))
    for line in check_shard(str(shard), data.readers[0].provenance, str(model_path), model_inputs):
        print(line, file=sys.stderr)
    model = model_from_checkpoint(ckpt, dev)
    model_id = file_hash(model_path)
    bar = tqdm(
        total=len(data),
        desc=f"predict {Path(shard).name}",
        unit="graph",
        disable=None if progress else True,  # None: a bar only on a terminal
        mininterval=1.0,
    )
    t0 = time.perf_counter()
    ids, preds = predict_batches(model, data.epoch_batches(batch_size), dev, bar, precision)
    bar.close()
    data.close()
    finite = np.isfinite(preds).all(axis=1) if len(ids) else np.zeros(0, bool)
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


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import SchemaArgumentParser, schema_option

    p = SchemaArgumentParser(
        prog="python -m pipeline predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("shard", help="predict one graph shard")
    s.add_argument("--model", required=True, help="model.pt written by the train stage")
    s.add_argument("--shard", required=True, help="HDF5 graph shard (results/graphs/{set}/shard-{i}.h5)")
    s.add_argument("--set", required=True, help="set name written to the 'split' column (test, pool, ...)")
    s.add_argument("--out", required=True, help="output parquet (PREDICTIONS schema)")
    schema_option(s, "--batch-size", key="predict.batch_size")
    schema_option(s, "--precision", key="predict.precision")
    s.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda ...")
    schema_option(s, "--threads", key="train.threads", help="torch CPU threads (0: torch default)")
    s.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one is drawn only on a terminal)"
    )
    g = sub.add_parser("gather", help="concatenate per-shard predictions of one set")
    g.add_argument("--inputs", nargs="*", required=True, help="per-shard prediction parquets")
    g.add_argument("--out", required=True, help="results/predict/{set}.parquet")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc_for_torch()  # see pipeline/runtime.py
    if args.command == "shard":
        try:
            predict_shard(
                args.model,
                args.shard,
                args.set,
                args.out,
                args.batch_size,
                args.device,
                args.threads,
                not args.no_progress,
                args.precision,
            )
        except (
            ModelFileError,
            ProvenanceError,
            ValueError,
        ) as e:  # not a plain-data model file; shard built otherwise
            print(f"error: {e}", file=sys.stderr)
            return 1
    else:
        gather(args.inputs, args.out)
    return 0
