"""Training and inference throughput (graphs/s) of pipeline.nn.model.ALIGNN vs the ``alignn`` package's pure-PyTorch
``ALIGNNAtomWisePure``, on the same real batches, printed as ratios (target: >= 1.5x on CPU).

The reference is configured to the same sizes (layers, hidden/embedding widths, 92 atom features, 80/40 RBFs, 66
outputs) with ``energy_mult_natoms=False``, no force/stress gradients (``calculate_gradient=False``), no bond-length
penalty, and the angle cosines taken from the graph (``lg_on_fly=False``), so both networks do the same job: a
66-bin spectrum per crystal. One difference stays: the reference normalises with LayerNorm, the paper (and our
default) with BatchNorm; ``ours[layer]`` rows use LayerNorm too, for a like-for-like comparison.
Timings alternate between the models (A B A B ...) and report the median, so load from other processes hits both.
Both models run in this one process with the glibc malloc settings the train/predict stages apply
(``pipeline.runtime``; ``--no-malloc-tuning`` shows the untuned numbers) and the train stage's optimizer
(``pipeline.nn.train.make_optimizer``: torch's fused AdamW). Our model runs with ``model.accelerator: auto`` as the
stages do by default (the fused CPU kernels, ``pipeline.nn.fused``); ``--accelerator torch`` measures its plain
PyTorch model instead (``benchmarks/conv_paths.py`` times every convolution path). With LayerNorm (``ours[layer]``)
``auto`` is the PyTorch model, since the kernels implement BatchNorm.

    python benchmarks/train_throughput.py                       # paper + cpu_small presets, 2 threads
    python benchmarks/train_throughput.py --presets cpu_small --reps 5

Batches come from a graph shard (default: the accuracy run's training shard); without one, graphs are built
from ../shared/data. Needs ``pip install alignn pydantic-settings`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import write_result

from pipeline.data.batch import GraphBatch
from pipeline.nn.model import ALIGNN, ModelConfig
from pipeline.nn.presets import PRESETS
from pipeline.nn.train import make_optimizer
from pipeline.runtime import tune_malloc_for_torch

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "jarvis_dft3d_subset.json.zip"


def real_batches(shard: Path | None, batch_size: int, n_batches: int, seed: int = 0) -> list[GraphBatch]:
    from pipeline.data.shards import collate

    if shard is not None and shard.exists():
        from pipeline.data.loader import ShardGraphs

        batches = ShardGraphs([shard]).epoch_batches(batch_size, torch.Generator().manual_seed(seed))
        return [b for _, b in zip(range(n_batches), batches, strict=False)]
    from pipeline.data.featurize import FeaturizeSettings
    from pipeline.data.graphs import build_graph

    f = FeaturizeSettings.from_config({})  # the featurize stage's defaults (the schema's)
    with zipfile.ZipFile(SHARED_ZIP) as zf:
        records = json.loads(zf.read(zf.namelist()[0]))
    rng = np.random.default_rng(seed)
    picked = [records[i] for i in rng.permutation(len(records))[: batch_size * n_batches]]
    graphs = [
        build_graph(
            np.asarray(r["atoms"]["lattice_mat"]),
            np.asarray(r["atoms"]["coords"]),
            r["atoms"]["elements"],
            f.k,
            f.cutoff,
            f.min_distance,
        )
        for r in picked
    ]
    targets = rng.random((len(graphs), 66)).astype(np.float32)
    return [
        collate(graphs[i : i + batch_size], targets=targets[i : i + batch_size])
        for i in range(0, len(graphs), batch_size)
    ]


def reference_model(cfg: ModelConfig) -> tuple[torch.nn.Module, Callable[[GraphBatch], torch.Tensor]]:
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig
    from alignn.torch_graph_builder import TorchGraph

    ref = ALIGNNAtomWisePure(
        ALIGNNAtomWisePureConfig(
            name="alignn_atomwise_pure",
            alignn_layers=cfg.alignn_layers,
            gcn_layers=cfg.gcn_layers,
            atom_input_features=cfg.atom_input_features,
            edge_input_features=cfg.edge_input_features,
            triplet_input_features=cfg.triplet_input_features,
            embedding_features=cfg.embedding_features,
            hidden_features=cfg.hidden_features,
            output_features=cfg.out_dim,
            energy_mult_natoms=False,
            calculate_gradient=False,
            gradwise_weight=0.0,
            use_penalty=False,
            lg_on_fly=False,
        )
    )
    graphs: dict[int, tuple] = {}

    def convert(b: GraphBatch) -> tuple:
        # built once per batch, outside the timed region (our model gets its GraphBatch ready-made too)
        if id(b) not in graphs:
            n_nodes = torch.bincount(b.node_graph, minlength=b.n_graphs)
            n_edges = torch.bincount(b.node_graph[b.edge_src], minlength=b.n_graphs)
            g = TorchGraph(
                num_nodes=b.atom_features.shape[0],
                src=b.edge_src,
                dst=b.edge_dst,
                ndata={"atom_features": b.atom_features},
                edata={"r": b.bond_vec},
                batch_num_nodes=n_nodes,
                batch_num_edges=n_edges,
            )
            lg = TorchGraph(
                num_nodes=b.edge_src.numel(), src=b.line_src, dst=b.line_dst, edata={"h": b.angle_cos}
            )
            graphs[id(b)] = (g, lg, None)
        return graphs[id(b)]

    def forward(b: GraphBatch) -> torch.Tensor:
        out = ref(convert(b))["out"]
        return torch.relu(out)  # the DOS head's final ReLU, as ours

    return ref, forward


def timed_pass(model: torch.nn.Module, forward, batches, train: bool) -> tuple[float, float]:
    """(wall s, process CPU s) for one pass over ``batches``: forward+backward+AdamW step when ``train``, else a
    no-grad forward. CPU time is reported too because wall time on a shared machine depends on the neighbours."""
    w0, c0 = time.perf_counter(), time.process_time()
    if train:
        model.train()
        opt = model._bench_opt  # type: ignore[attr-defined]
        for b in batches:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(forward(b), b.targets)
            loss.backward()
            opt.step()
    else:
        model.eval()
        with torch.no_grad():
            for b in batches:
                forward(b)
    return time.perf_counter() - w0, time.process_time() - c0


def autocast_forward(model: torch.nn.Module, dtype: torch.dtype) -> Callable[[GraphBatch], torch.Tensor]:
    """The model's forward under torch.autocast (the backward then runs outside it, as in the train stage)."""

    def forward(batch: GraphBatch) -> torch.Tensor:
        with torch.autocast("cpu", dtype=dtype):
            return model(batch).float()

    return forward


def bench_preset(
    name: str, batches: list[GraphBatch], reps: int, bf16: bool = True, *, accelerator: str
) -> list[dict]:
    base = ModelConfig.from_dict(PRESETS[name]["model"], accelerator)
    ours = ALIGNN(base)
    ours_ln = ALIGNN(ModelConfig.from_config({**base.to_dict(), "norm": "layer"}))
    ref, ref_forward = reference_model(base)
    models = {"ours": (ours, ours), "ours[layer]": (ours_ln, ours_ln), "alignn": (ref, ref_forward)}
    if bf16:  # the same model and optimizer under bf16 autocast (train.precision / predict.precision bf16)
        models["ours[bf16]"] = (ours, autocast_forward(ours, torch.bfloat16))
    for model, _ in models.values():
        # the train stage's optimizer (fused AdamW) for both models
        model._bench_opt = make_optimizer(model.parameters(), lr=1e-4, weight_decay=0.0)  # type: ignore[attr-defined]
    n_graphs = sum(b.n_graphs for b in batches)
    rows = []
    for mode in ("train", "infer"):
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
        for model, fwd in models.values():  # warm-up (allocator, reference graph conversion)
            timed_pass(model, fwd, batches[:1], mode == "train")
        for _ in range(reps):
            for key, (model, fwd) in models.items():
                times[key].append(timed_pass(model, fwd, batches, mode == "train"))
        gps = {k: n_graphs / statistics.median(w for w, _ in v) for k, v in times.items()}
        cpu_gps = {k: n_graphs / statistics.median(c for _, c in v) for k, v in times.items()}
        rows.append(
            {
                "preset": name,
                "mode": mode,
                "graphs": n_graphs,
                "accelerator_ours": ours.accelerator,
                "params_ours": sum(p.numel() for p in ours.parameters()),
                "params_alignn": sum(p.numel() for p in ref.parameters()),
                **{f"gps_{k}": round(v, 1) for k, v in gps.items()},
                "ratio_ours_vs_alignn": round(gps["ours"] / gps["alignn"], 2),
                "ratio_ours_layer_vs_alignn": round(gps["ours[layer]"] / gps["alignn"], 2),
                **(
                    {"ratio_ours_bf16_vs_fp32": round(gps["ours[bf16]"] / gps["ours"], 2)}
                    if "ours[bf16]" in gps
                    else {}
                ),
                "cpu_time_ratio_ours_vs_alignn": round(cpu_gps["ours"] / cpu_gps["alignn"], 2),
                "cpu_time_ratio_ours_layer_vs_alignn": round(cpu_gps["ours[layer]"] / cpu_gps["alignn"], 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["paper", "cpu_small"], choices=sorted(PRESETS))
    p.add_argument("--shard", type=Path, default=Path("results/shared_accuracy/graphs/train/shard-0.h5"))
    p.add_argument(
        "--graphs",
        type=int,
        default=192,
        help="graphs per timed pass, in batches of the preset's batch size (192 = 3 paper or 12 cpu_small batches)",
    )
    p.add_argument("--reps", type=int, default=3, help="timed passes per model (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/train_throughput.json)")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast timing of our model")
    p.add_argument(
        "--accelerator",
        choices=["auto", "fused", "torch"],
        default="auto",
        help="model.accelerator of our model (auto: the fused CPU kernels where they build)",
    )
    p.add_argument(
        "--no-malloc-tuning", action="store_true", help="leave glibc malloc at its defaults (both models)"
    )
    args = p.parse_args()
    tuned = False if args.no_malloc_tuning else tune_malloc_for_torch()
    print(f"# glibc malloc tuning (pipeline.runtime): {'on' if tuned else 'off'}", file=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name in args.presets:
        batch_size = PRESETS[name]["train"]["batch_size"]
        batches = real_batches(args.shard, batch_size, max(1, args.graphs // batch_size))
        sizes = [
            (b.n_graphs, b.atom_features.shape[0], b.edge_src.numel(), b.line_src.numel()) for b in batches
        ]
        print(
            f"# {name}: batches (graphs, atoms, bonds, angles) = {sizes}, threads={args.threads}",
            file=sys.stderr,
        )
        rows += bench_preset(name, batches, args.reps, bf16=not args.no_bf16, accelerator=args.accelerator)
    print("\n(wall-clock graphs/s; ratio = ours / alignn; cpu = the same ratio in process CPU time)")
    print("preset     mode   ours g/s  ours[layer]  alignn g/s  ratio  ratio[layer]  cpu  cpu[layer]")
    for r in rows:
        print(
            f"{r['preset']:<10} {r['mode']:<5} {r['gps_ours']:>9} {r['gps_ours[layer]']:>12} {r['gps_alignn']:>11}"
            f" {r['ratio_ours_vs_alignn']:>6} {r['ratio_ours_layer_vs_alignn']:>13}"
            f" {r['cpu_time_ratio_ours_vs_alignn']:>4} {r['cpu_time_ratio_ours_layer_vs_alignn']:>11}"
        )
        if "ratio_ours_bf16_vs_fp32" in r:
            print(
                f"{'':<10} {r['mode']:<5} bf16 autocast: {r['gps_ours[bf16]']} g/s = {r['ratio_ours_bf16_vs_fp32']}x fp32"
            )
    print(f"wrote {write_result('train_throughput', rows, args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
