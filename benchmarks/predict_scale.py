"""Scale check for the paper's large-scale step (Sec. III C: 41,000 unlabelled JARVIS structures): replicate the real
structures of ../shared/data to ``--n`` crystals and time predict end to end, graphs + model, with peak memory.

Phases (each timed): build crystal + line graphs and stream them into HDF5 shards of ``--shard-size`` graphs
(``pipeline.data.graphs.build_graph`` + ``pipeline.data.shards.ShardWriter``, what the featurize stage does); predict every
shard (``pipeline.nn.predict.predict_shard``, what each scattered predict job does); gather into one parquet.
Peak memory is the process's max RSS (``getrusage``), also printed right after imports, so the growth is visible.
With ``--n`` below 41,000 the wall times are also extrapolated linearly to 41,000 (marked as such).

    python benchmarks/predict_scale.py --n 41000                 # full size
    python benchmarks/predict_scale.py --n 5000 --threads 2      # quicker, extrapolated

The model is results/shared_accuracy/train/model.pt when present (``--model``), else an untrained cpu_small model
(same cost per graph).

``--screen`` times the whole screening path instead (``python -m pipeline screen``: read, graphs, every ensemble
member, properties with ensemble spreads, flags, summary tables and figures): the replicated structures are first
written to a MATERIALS-style parquet (not timed), then ``pipeline.screening.screen.run`` screens it. ``--model shipped``
uses the model shipped in the package, ``--model cpu_small`` one untrained cpu_small model.

    python benchmarks/predict_scale.py --screen --n 41000 --model shipped
    python benchmarks/predict_scale.py --screen --n 41000 --model cpu_small
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from common import cpu_model, machine, write_result

from pipeline.data.featurize import FeaturizeSettings
from pipeline.data.graphs import FeaturizationError, build_graph
from pipeline.data.shards import ShardWriter
from pipeline.nn.inference import pick_device
from pipeline.nn.model import ALIGNN, ModelConfig
from pipeline.nn.predict import PredictSettings, gather, predict_shard
from pipeline.nn.presets import PRESETS
from pipeline.runtime import tune_malloc_for_torch

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "jarvis_dft3d_subset.json.zip"
PAPER_N = 41_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=PAPER_N, help="structures to predict (real ones, replicated)")
    p.add_argument("--shard-size", type=int, default=5000, help="graphs per shard (one predict job each)")
    p.add_argument("--model", type=Path, default=Path("results/shared_accuracy/train/model.pt"))
    p.add_argument("--batch-size", type=int, default=PredictSettings.from_config({}).batch_size)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--work-dir", type=Path, help="keep shards/predictions here (default: a temporary directory)"
    )
    p.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc malloc at its defaults")
    p.add_argument(
        "--screen", action="store_true", help="time the screening path (pipeline.screening.screen) instead"
    )
    p.add_argument("--chunk", type=int, default=256, help="--screen: structures per chunk (screen --chunk)")
    p.add_argument(
        "--out", type=Path, default=None, help="--screen: add the result to this JSON (under --label)"
    )
    p.add_argument("--label", default=None, help="--screen: the row name in --out (default: the model path)")
    args = p.parse_args()
    if args.screen:
        return screen_benchmark(args)
    if not args.no_malloc_tuning:
        tune_malloc_for_torch()  # as `python -m pipeline predict` does
    torch.set_num_threads(args.threads)
    rss_start = peak_rss_mb()

    with zipfile.ZipFile(SHARED_ZIP) as zf:
        records = json.loads(zf.read(zf.namelist()[0]))
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="predict_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    model_path = args.model
    if not model_path.exists():
        model_path = work / "model.pt"
        model = ALIGNN(ModelConfig.from_dict(PRESETS["cpu_small"]["model"])).eval()
        torch.save({"model_config": model.config.to_dict(), "state_dict": model.state_dict()}, model_path)
        print(f"no trained model at {args.model}: timing an untrained cpu_small model", file=sys.stderr)

    # featurize: n structures (the real ones, cycled) -> shards, with the featurize stage's defaults (the schema's)
    featurize = FeaturizeSettings.from_config({})
    t0 = time.perf_counter()
    shards, n_rejected, n_atoms = [], 0, 0
    writer = None
    for i in range(args.n):
        if i % args.shard_size == 0:
            if writer is not None:
                writer.__exit__(None, None, None)
            shards.append(work / f"shard-{len(shards)}.h5")
            writer = ShardWriter(shards[-1], labelled=False).__enter__()
        rec = records[i % len(records)]
        atoms = rec["atoms"]
        try:
            graph = build_graph(
                np.asarray(atoms["lattice_mat"]),
                np.asarray(atoms["coords"]),
                atoms["elements"],
                featurize.k,
                featurize.cutoff,
                featurize.min_distance,
            )
        except FeaturizationError:
            n_rejected += 1
            continue
        n_atoms += graph.n_atoms
        writer.append(f"{rec['jid']}#{i}", graph)
    if writer is not None:
        writer.__exit__(None, None, None)
    t_graphs = time.perf_counter() - t0
    rss_graphs = peak_rss_mb()

    # predict every shard, then gather
    t0 = time.perf_counter()
    outs = []
    settings = PredictSettings.from_config({"batch_size": args.batch_size})  # as the predict stage's defaults
    accelerator = ModelConfig.from_config({}).accelerator  # model.accelerator's schema default
    for s, shard in enumerate(shards):
        outs.append(work / f"pred-{s}.parquet")
        predict_shard(
            model_path, shard, "pool", outs[-1], settings, accelerator, pick_device("auto"), progress=False
        )
    t_predict = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = gather(outs, work / "pool.parquet")
    t_gather = time.perf_counter() - t0

    total = t_graphs + t_predict + t_gather
    scale = PAPER_N / args.n
    report = {
        "n_structures": args.n,
        "n_predicted": table.num_rows,
        "n_rejected": n_rejected,
        "mean_atoms": n_atoms / max(1, args.n - n_rejected),
        "shards": len(shards),
        "threads": args.threads,
        "seconds_graphs": round(t_graphs, 1),
        "seconds_predict": round(t_predict, 1),
        "seconds_gather": round(t_gather, 1),
        "seconds_total": round(total, 1),
        "structures_per_s": round(args.n / total, 1),
        "peak_rss_mb_after_imports": round(rss_start, 0),
        "peak_rss_mb_after_graphs": round(rss_graphs, 0),
        "peak_rss_mb_total": round(peak_rss_mb(), 0),
        "extrapolated_seconds_total_41000": None if args.n >= PAPER_N else round(total * scale, 0),
        "work_dir": str(work),
    }
    print(json.dumps(report, indent=2))
    return 0


def _untrained_model(path: Path) -> Path:
    """One untrained cpu_small model with the provenance the train stage records (same cost per graph)."""
    from pipeline.data.provenance import InputProvenance, model_provenance

    model = ALIGNN(ModelConfig.from_dict(PRESETS["cpu_small"]["model"])).eval()
    cfg = model.config.to_dict()
    prov = model_provenance(InputProvenance.current(12, 8.0), cfg)
    torch.save(
        {"model_config": cfg, "train_config": {}, "provenance": prov, "state_dict": model.state_dict()}, path
    )
    return path


def screen_benchmark(args: argparse.Namespace) -> int:
    """Time pipeline.screening.screen.run over --n replicated real structures (written to a parquet first, not timed)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.nn.pretrained import default_model_path
    from pipeline.screening import screen
    from pipeline.stages.screen import Settings

    if not args.no_malloc_tuning:
        tune_malloc_for_torch()
    torch.set_num_threads(args.threads)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="screen_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SHARED_ZIP) as zf:
        records = json.loads(zf.read(zf.namelist()[0]))
    rows = []
    for rec in records:
        atoms = rec["atoms"]
        lattice = np.asarray(atoms["lattice_mat"], dtype=float)
        coords = np.asarray(atoms["coords"], dtype=float)
        if atoms.get("cartesian"):
            coords = np.linalg.solve(lattice.T, coords.T).T
        rows.append((lattice.tolist(), coords.tolist(), list(atoms["elements"])))
    del records
    source = work / "structures.parquet"
    schema = pa.schema(
        [
            ("jid", pa.string()),
            ("lattice_mat", pa.list_(pa.list_(pa.float64()))),
            ("frac_coords", pa.list_(pa.list_(pa.float64()))),
            ("elements", pa.list_(pa.string())),
        ]
    )
    with pq.ParquetWriter(source, schema) as w:
        for lo in range(0, args.n, 5000):
            part = [(f"S{i}", *rows[i % len(rows)]) for i in range(lo, min(lo + 5000, args.n))]
            w.write_table(
                pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in part], schema)
            )
    del rows
    if str(args.model) == "shipped":
        model_path = default_model_path()
    elif str(args.model) == "cpu_small" or not Path(args.model).exists():
        model_path = _untrained_model(work / "cpu_small.pt")
    else:
        model_path = Path(args.model)
    rss_start = peak_rss_mb()
    t0 = time.perf_counter()
    s = Settings.from_config({})  # the schema's defaults, as `python -m pipeline screen` without --set
    result = screen.run(
        [source],
        work / "out",
        s.screen,
        s.properties.temperatures,
        s.properties.unstable_fraction,
        s.featurize.min_distance,
        model_path,
        chunk=args.chunk,
        progress=False,
        head_unstable_fraction=s.properties.head_unstable_fraction,
    )
    total = time.perf_counter() - t0
    model = screen.load_model(model_path)
    report = {
        "mode": "screen",
        "n_structures": args.n,
        "n_screened": result.n_screened,
        "n_rejected": result.n_rejected,
        "model": str(model_path),
        "members": len(model.members),
        "threads": args.threads,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "seconds_total": round(total, 1),
        "structures_per_s": round(args.n / total, 1),
        "peak_rss_mb_before_screen": round(rss_start, 0),
        "peak_rss_mb_total": round(peak_rss_mb(), 0),
        "extrapolated_seconds_total_41000": None if args.n >= PAPER_N else round(total * PAPER_N / args.n, 0),
        "work_dir": str(work),
    }
    print(json.dumps(report, indent=2))
    if args.out is not None:  # one row per --label, the rows of earlier runs kept with their own stamps
        previous = json.loads(args.out.read_text())["results"] if args.out.exists() else {}
        write_result(
            "screen_scale",
            previous | {args.label or str(model_path): report | {"machine": machine()}},
            args.out,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
