"""featurize stage: crystal graph + line graph of every material of one (split, shard) -> an HDF5 shard.

Two commands:

  python -m pipeline featurize --split train --shard-index 0 \\
      [--input results/dos/dataset.parquet] [--out results/graphs/train/shard-0.h5] \\
      [--rejects results/graphs/train/rejects-0.parquet] [--set featurize.k=12] [--set featurize.n_shards=1]
    Featurise the materials of SPLIT that belong to shard i of featurize.n_shards. Materials are assigned to
    shards by a hash of their jid (stable: adding or removing materials never moves the others) and written in
    input order. The input is streamed: memory does not grow with the number of materials. Materials that cannot
    be featurised go to the shard's rejects table (jid, stage, reason); the rest of the shard is written. Input
    defaults to results/dos/pool.parquet for --split pool, results/dos/dataset.parquet otherwise.

  python -m pipeline featurize gather --shards S1.h5 S2.h5 ... --shard-rejects R1.parquet R2.parquet ... \\
      [--manifest results/graphs/manifest.parquet] [--rejects results/graphs/rejects.parquet]
    Check every shard is complete (graphs + rejects = materials assigned to it) and write the manifest
    (schema GRAPH_MANIFEST in pipeline/schemas.py) and the concatenated rejects.

Library: pipeline.data.featurize (shard layout and graph conventions: pipeline/data/shards.py, graphs.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass

from pipeline.config import ConfigNode
from pipeline.data.featurize import SPLITS, FeaturizeSettings, default_input, gather, run_shard
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the featurize stage reads: the ``featurize`` section."""

    featurize: FeaturizeSettings


def build_parser() -> argparse.ArgumentParser:
    """The shard command's parser (``featurize gather`` has its own, :func:`gather_parser`)."""
    p = common.parser("featurize", __doc__)
    p.add_argument("--split", required=True, choices=SPLITS, help="which split's materials to featurise")
    p.add_argument(
        "--shard-index", type=common.non_negative_int, default=0, help="this shard, 0..featurize.n_shards-1"
    )
    p.add_argument("--input", help="MATERIALS parquet (default: results/dos/{dataset,pool}.parquet by split)")
    p.add_argument("--out", help="shard file (default results/graphs/{split}/shard-{i}.h5)")
    p.add_argument("--rejects", help="rejects parquet (default results/graphs/{split}/rejects-{i}.parquet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_settings_options(p, Settings)
    return p


def gather_parser() -> argparse.ArgumentParser:
    p = common.parser(
        "featurize gather",
        "Check the shards and write the graph manifest and the concatenated featurize rejects.",
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
        a = gather_parser().parse_args(argv[1:])
        manifest = gather(a.shards, a.shard_rejects, a.manifest, a.rejects)
        n_rejects = int(manifest["n_rejected"].sum())
        print(
            json.dumps(
                {"shards": len(manifest), "graphs": int(manifest["n_graphs"].sum()), "rejects": n_rejects}
            )
        )
        return 0
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    settings = settings.featurize
    if a.shard_index >= settings.n_shards:
        p.error(
            f"argument --shard-index: {a.shard_index} must be smaller than featurize.n_shards ({settings.n_shards})"
        )
    out = a.out or f"results/graphs/{a.split}/shard-{a.shard_index}.h5"
    rejects = a.rejects or f"results/graphs/{a.split}/rejects-{a.shard_index}.parquet"
    summary = run_shard(
        a.input or default_input(a.split),
        a.split,
        a.shard_index,
        out,
        rejects,
        settings,
        progress=not a.no_progress,
    )
    print(json.dumps(summary))  # the summary, once (machine-readable, on stdout)
    return 0
