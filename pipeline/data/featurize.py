"""featurize stage: crystal graph + line graph of every material of one (split, shard) -> an HDF5 shard.

Two commands:

  python -m pipeline featurize --split train --shard-index 0 --n-shards 4 \\
      [--input results/dos/dataset.parquet] [--out results/graphs/train/shard-0.h5] \\
      [--rejects results/graphs/train/rejects-0.parquet] [--k 12] [--cutoff 8.0] [--min-distance 0.5]
    Featurise the materials of SPLIT that belong to shard i of n. Materials are assigned to shards by a hash of
    their jid (stable: adding or removing materials never moves the others) and written in input order (the dos
    stage writes them sorted by jid). The input is streamed: memory does not grow with the number of materials.
    Materials that cannot be featurised go to the shard's rejects table (jid, stage, reason); the rest of the shard
    is written. Input defaults to results/dos/pool.parquet for --split pool, results/dos/dataset.parquet otherwise.

  python -m pipeline featurize gather --shards S1.h5 S2.h5 ... --shard-rejects R1.parquet R2.parquet ... \\
      [--manifest results/graphs/manifest.parquet] [--rejects results/graphs/rejects.parquet]
    Check every shard is complete (graphs + rejects = materials assigned to it) and write the manifest
    (schema GRAPH_MANIFEST in pipeline/schemas.py) and the concatenated rejects.

Shard layout and graph conventions: pipeline/data/shards.py and pipeline/data/graphs.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.data.graphs import DEFAULT_MIN_DISTANCE, FeaturizationError, Graph, build_graph, build_graphs
from pipeline.data.shards import ShardWriter
from pipeline.io import rejects_frame, write_parquet, write_rejects
from pipeline.provenance import InputProvenance
from pipeline.schemas import GRAPH_MANIFEST, REJECTS

log = logging.getLogger("pipeline.data.featurize")

STAGE = "featurize"
SPLITS = ("train", "val", "test", "pool")
_COLUMNS = ["jid", "split", "dos", "lattice_mat", "frac_coords", "elements"]


def shard_of(jid: str, n_shards: int) -> int:
    """Shard index of a material: a stable hash of its id (independent of row order and of other materials)."""
    digest = hashlib.blake2b(jid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_shards


def default_input(split: str) -> str:
    return "results/dos/pool.parquet" if split == "pool" else "results/dos/dataset.parquet"


def _in_shard(batch: pa.RecordBatch, split: str, shard_index: int, n_shards: int) -> pa.RecordBatch:
    batch = batch.filter(pc.equal(batch.column("split"), split))
    mine = [shard_of(j, n_shards) == shard_index for j in batch.column("jid").to_pylist()]
    return batch.filter(pa.array(mine, type=pa.bool_()))


def count_materials(path: str | os.PathLike, split: str, shard_index: int, n_shards: int) -> int:
    """Rows of ``path`` in ``split`` and in shard ``shard_index`` (reads only the jid and split columns)."""
    pf = pq.ParquetFile(path)
    return sum(
        _in_shard(b, split, shard_index, n_shards).num_rows for b in pf.iter_batches(columns=["jid", "split"])
    )


def iter_materials(
    path: str | os.PathLike, split: str, shard_index: int, n_shards: int, batch_rows: int = 256
) -> Iterator[dict[str, Any]]:
    """Stream the rows of ``split`` in shard ``shard_index`` of ``n_shards``, in input order (the dos stage
    writes materials sorted by jid), ``batch_rows`` at a time: memory does not grow with the table."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=_COLUMNS):
        yield from _in_shard(batch, split, shard_index, n_shards).to_pylist()


def featurize_rows(
    rows: Iterable[dict[str, Any]],
    k: int,
    cutoff: float,
    min_distance: float,
    labelled: bool,
    rejects: list[tuple[str, str, str]],
    chunk_rows: int = 256,
) -> Iterator[tuple[str, Graph, np.ndarray | None]]:
    """Yield (jid, graph, target) for every featurisable row, in input order; append (jid, stage, reason) rows to
    ``rejects``. Rows are featurised ``chunk_rows`` at a time with :func:`pipeline.data.graphs.build_graphs`."""
    chunk: list[dict[str, Any]] = []
    for row in rows:
        if labelled and row["dos"] is None:
            rejects.append((row["jid"], STAGE, "labelled material without a DOS"))
            continue
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            yield from _featurize_chunk(chunk, k, cutoff, min_distance, labelled, rejects)
            chunk = []
    if chunk:
        yield from _featurize_chunk(chunk, k, cutoff, min_distance, labelled, rejects)


def _featurize_chunk(
    chunk: list[dict[str, Any]],
    k: int,
    cutoff: float,
    min_distance: float,
    labelled: bool,
    rejects: list[tuple[str, str, str]],
) -> Iterator[tuple[str, Graph, np.ndarray | None]]:
    structures = [(r["lattice_mat"], r["frac_coords"], r["elements"]) for r in chunk]
    try:
        results: list[Graph | Exception] = build_graphs(structures, k, cutoff, min_distance)
    except Exception:  # noqa: BLE001 - malformed input that escaped validation: isolate it row by row
        log.exception("featurize: chunk failed, retrying its %d rows one by one", len(chunk))
        results = [_one(s, k, cutoff, min_distance) for s in structures]
    for row, result in zip(chunk, results, strict=True):
        if isinstance(result, Exception):
            reason = str(result) if isinstance(result, FeaturizationError) else _unexpected(result)
            rejects.append((row["jid"], STAGE, reason))
            continue
        target = np.asarray(row["dos"], dtype=np.float32) if labelled else None
        yield row["jid"], result, target


def _one(structure: tuple[Any, Any, Any], k: int, cutoff: float, min_distance: float) -> Graph | Exception:
    try:
        return build_graph(*structure, k, cutoff, min_distance)
    except Exception as e:  # noqa: BLE001 - recorded as a reject with its type and message
        return e


def _unexpected(e: Exception) -> str:
    return f"unexpected error {type(e).__name__}: {e}"


def run_shard(
    input_path: str | os.PathLike,
    split: str,
    shard_index: int,
    n_shards: int,
    out: str | os.PathLike,
    rejects_path: str | os.PathLike,
    k: int = 12,
    cutoff: float = 8.0,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    progress: bool = True,
) -> dict[str, Any]:
    from pipeline.config import check_values

    # arguments are checked before any input is read: a bad k is one error, not a reject row per material
    check_values(
        {
            "featurize.k": k,
            "featurize.cutoff": cutoff,
            "featurize.min_distance": min_distance,
            "featurize.n_shards": n_shards,
        }
    )
    if not 0 <= shard_index < n_shards:
        raise ValueError(f"--shard-index {shard_index} not in 0..{n_shards - 1}")
    n_input = count_materials(input_path, split, shard_index, n_shards)
    labelled = split != "pool"
    meta = {
        "split": split,
        "shard_index": shard_index,
        "n_shards": n_shards,
        "n_input": n_input,
        # k, cutoff, atom-feature table and DOS grid: the input provenance (pipeline/provenance.py)
        **InputProvenance.current(k, cutoff).attrs(),
        "min_distance": min_distance,
        "source": os.fspath(input_path),
    }
    rejects: list[tuple[str, str, str]] = []
    rows = iter_materials(input_path, split, shard_index, n_shards)
    desc = f"featurize {split} {shard_index + 1}/{n_shards}"
    bar = tqdm(
        rows, total=n_input, desc=desc, unit="graph", disable=None if progress else True, mininterval=2.0
    )
    with ShardWriter(out, labelled=labelled, meta=meta) as writer:
        for jid, graph, target in featurize_rows(bar, k, cutoff, min_distance, labelled, rejects):
            writer.append(jid, graph, target)
    write_rejects(rejects, rejects_path)
    return {**meta, "n_graphs": writer.n_graphs, "n_rejected": len(rejects), "path": os.fspath(out)}


# ------------------------------------------------------------------------------------------ gather ------------
def gather(
    shards: Sequence[str | os.PathLike],
    shard_rejects: Sequence[str | os.PathLike],
    manifest_path: str | os.PathLike,
    rejects_path: str | os.PathLike,
) -> pd.DataFrame:
    if len(shards) != len(shard_rejects):
        raise ValueError(f"{len(shards)} shards but {len(shard_rejects)} rejects files")
    rows, all_rejects = [], []
    for shard, rej_path in zip(shards, shard_rejects, strict=True):
        rej = pq.read_table(rej_path, schema=REJECTS).to_pandas()
        with h5py.File(shard, "r") as f:
            a = dict(f.attrs)
        if int(a["n_graphs"]) + len(rej) != int(a["n_input"]):
            raise ValueError(
                f"{shard}: {a['n_graphs']} graphs + {len(rej)} rejects != {a['n_input']} materials assigned"
            )
        rows.append(
            {
                "split": str(a["split"]),
                "shard": int(a["shard_index"]),
                "n_shards": int(a["n_shards"]),
                "path": os.fspath(shard),
                "n_input": int(a["n_input"]),
                "n_graphs": int(a["n_graphs"]),
                "n_rejected": len(rej),
                "n_atoms": int(a["n_atoms"]),
                "n_edges": int(a["n_edges"]),
                "n_triplets": int(a["n_triplets"]),
                "k": int(a["k"]),
                "cutoff": float(a["cutoff"]),
                "labelled": bool(a["labelled"]),
                "bytes": Path(shard).stat().st_size,
            }
        )
        all_rejects.append(rej)
    manifest = pd.DataFrame(rows, columns=GRAPH_MANIFEST.names).sort_values(["split", "shard"], kind="stable")
    write_parquet(manifest, manifest_path, GRAPH_MANIFEST)
    rejects = pd.concat(all_rejects) if all_rejects else rejects_frame([])
    write_rejects(rejects.itertuples(index=False, name=None), rejects_path)
    return manifest


# ------------------------------------------------------------------------------------------ CLI ---------------
def build_parser() -> argparse.ArgumentParser:
    """The shard command's parser (``featurize gather`` has its own, :func:`_gather_parser`)."""
    from pipeline.config import SchemaArgumentParser, non_negative_int, schema_option

    p = SchemaArgumentParser(
        prog="python -m pipeline featurize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--split", required=True, choices=SPLITS, help="which split's materials to featurise")
    p.add_argument(
        "--shard-index", type=non_negative_int, default=0, help="this shard, 0..n_shards-1 (default 0)"
    )
    # by hand, one shard holding the whole split is the natural default; the workflow passes featurize.n_shards
    schema_option(p, "--n-shards", key="featurize.n_shards", default=1, help="number of shards of the split")
    p.add_argument("--input", help="MATERIALS parquet (default: results/dos/{dataset,pool}.parquet by split)")
    p.add_argument("--out", help="shard file (default results/graphs/{split}/shard-{i}.h5)")
    p.add_argument("--rejects", help="rejects parquet (default results/graphs/{split}/rejects-{i}.parquet)")
    schema_option(p, "--k", key="featurize.k")
    schema_option(p, "--cutoff", key="featurize.cutoff")
    schema_option(p, "--min-distance", key="featurize.min_distance")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _gather_parser() -> argparse.ArgumentParser:
    from pipeline.config import SchemaArgumentParser  # for --help with defaults

    p = SchemaArgumentParser(
        prog="python -m pipeline featurize gather",
        description="Check the shards and write the graph manifest and the concatenated featurize rejects.",
    )
    p.add_argument("--shards", nargs="+", required=True, help="shard .h5 files")
    p.add_argument(
        "--shard-rejects", nargs="+", required=True, help="their rejects parquet files, same order"
    )
    p.add_argument(
        "--manifest", default="results/graphs/manifest.parquet", help="graph manifest (GRAPH_MANIFEST)"
    )
    p.add_argument(
        "--rejects", default="results/graphs/rejects.parquet", help="the shards' rejects, concatenated"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["gather"]:
        a = _gather_parser().parse_args(argv[1:])
        manifest = gather(a.shards, a.shard_rejects, a.manifest, a.rejects)
        n_rejects = int(manifest["n_rejected"].sum())
        print(
            json.dumps(
                {"shards": len(manifest), "graphs": int(manifest["n_graphs"].sum()), "rejects": n_rejects}
            )
        )
        return 0
    p = build_parser()
    a = p.parse_args(argv)
    if a.shard_index >= a.n_shards:
        p.error(f"argument --shard-index: {a.shard_index} must be smaller than --n-shards ({a.n_shards})")
    out = a.out or f"results/graphs/{a.split}/shard-{a.shard_index}.h5"
    rejects = a.rejects or f"results/graphs/{a.split}/rejects-{a.shard_index}.parquet"
    summary = run_shard(
        a.input or default_input(a.split),
        a.split,
        a.shard_index,
        a.n_shards,
        out,
        rejects,
        k=a.k,
        cutoff=a.cutoff,
        min_distance=a.min_distance,
        progress=not a.no_progress,
    )
    print(json.dumps(summary))  # the summary, once (machine-readable, on stdout)
    return 0
