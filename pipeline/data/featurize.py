"""Featurisation of one (split, shard): crystal graph + line graph of every material -> an HDF5 shard, and the
gather step that checks the shards and writes the graph manifest. The command line is ``pipeline.stages.featurize``.

Materials are assigned to shards by a hash of their jid (stable: adding or removing materials never moves the
others) and written in input order (the dos stage writes them sorted by jid). The input is streamed: memory does not
grow with the number of materials. Materials that cannot be featurised go to the shard's rejects table (jid, stage,
reason); the rest of the shard is written. Shard layout and graph conventions: pipeline/data/shards.py and
pipeline/data/graphs.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
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

from pipeline.data.graphs import FeaturizationError, FeaturizeSettings, Graph, build_graph, build_graphs
from pipeline.data.provenance import InputProvenance
from pipeline.data.shards import ShardWriter
from pipeline.io import rejects_frame, write_parquet, write_rejects
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
    out: str | os.PathLike,
    rejects_path: str | os.PathLike,
    settings: FeaturizeSettings,
    progress: bool = True,
) -> dict[str, Any]:
    """Featurise the materials of ``split`` in shard ``shard_index`` of ``settings.n_shards`` into ``out``; the
    refused ones go to ``rejects_path``. Returns the shard's summary (counts, provenance, paths)."""
    k, cutoff, min_distance, n_shards = settings.k, settings.cutoff, settings.min_distance, settings.n_shards
    if not 0 <= shard_index < n_shards:
        raise ValueError(
            f"shard index {shard_index} not in 0..{n_shards - 1} (featurize.n_shards {n_shards})"
        )
    n_input = count_materials(input_path, split, shard_index, n_shards)
    labelled = split != "pool"
    meta = {
        "split": split,
        "shard_index": shard_index,
        "n_shards": n_shards,
        "n_input": n_input,
        # k, cutoff, atom-feature table and DOS grid: the input provenance (pipeline/data/provenance.py)
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
