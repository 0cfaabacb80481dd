"""GPU readiness check (one prepared run, a few minutes): on a CUDA machine, train the ``paper`` preset a few
hundred steps in float32 and with autocast (bf16, or fp16 with a GradScaler), check that the loss falls in both,
that CUDA and CPU predictions of the same weights agree, and time training/inference in graphs/s, against the
``alignn`` package's ``ALIGNNAtomWisePure`` on the same GPU when it is installed.

    bash benchmarks/gpu_check.sh                   # on the GPU machine; writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --preset demo --steps 4 --out /tmp/x.json   # the CPU-side logic

Graphs are built from the committed demo structures (``data/demo/structures.json``: textbook crystals), so the
check needs nothing beside the repository; targets are those crystals' spectra shapes drawn from a seeded
generator, which is enough to see an optimiser make progress. Exit status 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.batch import GraphBatch  # noqa: E402
from pipeline.data.featurize import FeaturizeSettings  # noqa: E402
from pipeline.data.graphs import build_graph  # noqa: E402
from pipeline.data.shards import collate  # noqa: E402
from pipeline.nn.inference import pick_device  # noqa: E402
from pipeline.nn.model import ALIGNN, ModelConfig  # noqa: E402
from pipeline.nn.presets import PRESETS  # noqa: E402
from pipeline.nn.train import make_optimizer  # noqa: E402

DEMO = ROOT / "data" / "demo" / "structures.json"


def demo_batches(batch_size: int, n_batches: int, seed: int = 0) -> list[GraphBatch]:
    """``n_batches`` batches of demo crystals (cycled, in a seeded order) with seeded smooth DOS-like targets."""
    records = json.loads(DEMO.read_text())
    f = FeaturizeSettings.from_config({})  # the featurize stage's defaults (the schema's)
    graphs = [
        build_graph(
            np.asarray(r["atoms"]["lattice_mat"]),
            np.asarray(r["atoms"]["coords"]),
            r["atoms"]["elements"],
            f.k,
            f.cutoff,
            f.min_distance,
        )
        for r in records
    ]
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, 66)
    centres = rng.uniform(0.3, 0.7, len(graphs))
    targets = np.exp(-(((grid[None, :] - centres[:, None]) / 0.1) ** 2)).astype(np.float32)  # one peak each
    order = rng.permutation(np.resize(np.arange(len(graphs)), batch_size * n_batches))
    return [
        collate([graphs[i] for i in chunk], targets=targets[chunk])
        for chunk in np.array_split(order, n_batches)
    ]


def train_steps(
    model: torch.nn.Module, batches: list[GraphBatch], device: torch.device, steps: int, amp: str | None
) -> dict:
    """Train ``steps`` steps (cycling over ``batches``); autocast with ``amp`` ("bf16"/"fp16") when given."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    opt = make_optimizer(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    losses, graphs = [], 0
    sync(device)
    t0 = time.perf_counter()
    for step in range(steps):
        batch = batches[step % len(batches)].to(device)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(model(batch).float(), batch.targets.float())
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        graphs += batch.n_graphs
    sync(device)
    wall = time.perf_counter() - t0
    window = max(1, steps // 10)
    return {
        "amp": amp or "fp32",
        "steps": steps,
        "loss_first": statistics.fmean(losses[:window]),
        "loss_last": statistics.fmean(losses[-window:]),
        "loss_falls": loss_falls(losses),
        "graphs_per_s": graphs / wall,
    }


def loss_falls(losses: list[float]) -> bool:
    """Every loss finite and the mean of the last tenth below that of the first tenth."""
    window = max(1, len(losses) // 10)
    finite = bool(np.isfinite(losses).all())
    return finite and statistics.fmean(losses[-window:]) < statistics.fmean(losses[:window])


def inference_gps(
    model: torch.nn.Module, batches: list[GraphBatch], device: torch.device, amp: str | None
) -> float:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    moved = [b.to(device) for b in batches]
    model.eval()
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        model(moved[0])  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for b in moved:
            model(b)
        sync(device)
    return sum(b.n_graphs for b in moved) / (time.perf_counter() - t0)


def device_agreement(model: torch.nn.Module, batches: list[GraphBatch], device: torch.device) -> float:
    """Max |prediction on ``device`` - prediction on CPU| for the same weights (eval mode)."""
    model.eval()
    cpu_model = ALIGNN(model.config)
    cpu_model.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    cpu_model.eval()
    with torch.no_grad():
        diff = [float((model(b.to(device)).float().cpu() - cpu_model(b)).abs().max()) for b in batches[:2]]
    return max(diff)


def alignn_gps(cfg: ModelConfig, batches: list[GraphBatch], device: torch.device) -> dict | None:
    """Training and inference graphs/s of alignn's ALIGNNAtomWisePure at the same sizes, None without alignn."""
    try:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from train_throughput import reference_model
    except ImportError:
        return None
    try:
        ref, forward = reference_model(cfg)
    except ImportError:
        return None
    ref = ref.to(device)
    opt = make_optimizer(ref.parameters(), lr=1e-3, weight_decay=0.0)
    moved = [b.to(device) for b in batches]
    ref.train()
    sync(device)
    t0 = time.perf_counter()
    for b in moved:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(forward(b), b.targets).backward()
        opt.step()
    sync(device)
    train = sum(b.n_graphs for b in moved) / (time.perf_counter() - t0)
    ref.eval()
    with torch.no_grad():
        sync(device)
        t0 = time.perf_counter()
        for b in moved:
            forward(b)
        sync(device)
    return {
        "train_graphs_per_s": train,
        "infer_graphs_per_s": sum(b.n_graphs for b in moved) / (time.perf_counter() - t0),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu (default auto)")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="model preset (default paper)")
    p.add_argument("--steps", type=int, default=300, help="training steps per precision (default 300)")
    p.add_argument("--batch-size", type=int, default=64, help="graphs per batch (default 64, the paper's)")
    p.add_argument(
        "--amp", default="bf16", choices=["bf16", "fp16"], help="autocast dtype of the AMP run (default bf16)"
    )
    p.add_argument("--tolerance", type=float, default=1e-3, help="max |CUDA - CPU| prediction (default 1e-3)")
    p.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"), help="JSON report"
    )
    args = p.parse_args(argv)
    if args.steps < 2 or args.batch_size < 1:
        p.error("--steps must be >= 2 and --batch-size >= 1")
    device = pick_device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig.from_dict(PRESETS[args.preset]["model"])
    batches = demo_batches(args.batch_size, 8)
    runs = []
    for amp in (None, args.amp):
        torch.manual_seed(0)
        model = ALIGNN(cfg).to(device)
        runs.append(train_steps(model, batches, device, args.steps, amp))
        runs[-1]["infer_graphs_per_s"] = inference_gps(model, batches, device, amp)
        print(json.dumps(runs[-1]), flush=True)
    agreement = device_agreement(model, batches, device) if device.type != "cpu" else 0.0
    report = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "preset": args.preset,
        "batch_size": args.batch_size,
        "runs": runs,
        "max_abs_diff_device_vs_cpu": agreement,
        "alignn": alignn_gps(cfg, batches, device),
    }
    report["checks"] = {
        "loss_falls_fp32": runs[0]["loss_falls"],
        f"loss_falls_{args.amp}": runs[1]["loss_falls"],
        "device_matches_cpu": agreement <= args.tolerance,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["checks"]), file=sys.stderr)
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
