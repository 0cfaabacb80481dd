"""Training and inference throughput (graphs/s) of each code path of the edge-gated convolution
(pipeline/nn/model.py, pipeline/nn/fused.py), to decide which paths earn their keep (issue #13).

Paths, all on the same real batches and weights:

* ``fused``: ``model.accelerator: fused``, the C kernels with the row-blocked BLAS calls for the edge linear map;
* ``fused[torch-gemm]``: the same kernels with torch's GEMMs for the edge linear map
  (``fused.BLOCKED_GEMM_MIN_ROWS`` raised past any batch);
* ``torch``: ``model.accelerator: torch``, the PyTorch path with its regular-edge-list paths (broadcast source
  gathers and :class:`pipeline.nn.model.GatedMean` where ``regular_fanout``, block destinations on the line graph
  where ``line_dst_blocks``);
* ``torch[fanout]``: the same without the line graph's block destinations (``line_dst_blocks`` -> None);
* ``torch[general]``: the general path only (``regular_fanout`` -> 0), what an arbitrary edge list takes;
* ``... bf16``: the PyTorch paths under ``torch.autocast(bf16)`` (``train.precision`` / ``predict.precision``
  bf16), where the fused kernels step aside, so the PyTorch path is what runs.

Training = forward + backward + the train stage's AdamW step per batch; inference = a no-grad eval forward.
Timings alternate between the paths (A B C ... A B C ...), so load from other processes hits all of them, and
report the median (``gps``) and the best (``gps_best``, the fastest repeat: on a machine shared with other jobs the
closest to its unloaded speed) of the repeats; process CPU time is reported next to wall time. The glibc malloc
tuning of the train/predict stages (``pipeline.runtime``) is applied.

    python benchmarks/conv_paths.py                         # cpu_small and paper, 2 threads
    python benchmarks/conv_paths.py --presets cpu_small --reps 7

Writes benchmarks/results/conv_paths.json (machine stamp, load average before and after).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from common import write_result
from train_throughput import real_batches
from train_throughput import timed_pass as throughput_timed_pass

import pipeline.nn.model as model_module
from pipeline.data.batch import GraphBatch
from pipeline.nn import fused
from pipeline.nn.model import ALIGNN, ModelConfig
from pipeline.nn.train import make_optimizer
from pipeline.runtime import tune_malloc_for_torch


@contextlib.contextmanager
def _patched(obj: object, name: str, value: object) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@dataclasses.dataclass
class ConvPath:
    """One code path: the accelerator its model is built with, what is patched while it runs, autocast or not."""

    accelerator: str
    patch: tuple[object, str, object] | None = None
    bf16: bool = False

    def context(self) -> contextlib.AbstractContextManager:
        return _patched(*self.patch) if self.patch else contextlib.nullcontext()

    def forward(self, model: ALIGNN) -> Callable[[GraphBatch], torch.Tensor]:
        if not self.bf16:
            return model

        def run(batch: GraphBatch) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(batch).float()

        return run


PATHS = {
    "fused": ConvPath("fused"),
    "fused[torch-gemm]": ConvPath("fused", (fused, "BLOCKED_GEMM_MIN_ROWS", 1 << 62)),
    "torch": ConvPath("torch"),
    "torch[fanout]": ConvPath("torch", (model_module, "line_dst_blocks", lambda *a: None)),
    "torch[general]": ConvPath("torch", (model_module, "regular_fanout", lambda src, n: 0)),
    "torch bf16": ConvPath("torch", bf16=True),
    "torch[fanout] bf16": ConvPath("torch", (model_module, "line_dst_blocks", lambda *a: None), bf16=True),
    "torch[general] bf16": ConvPath("torch", (model_module, "regular_fanout", lambda src, n: 0), bf16=True),
}


def timed_pass(model: ALIGNN, forward, opt, batches: list[GraphBatch], train: bool) -> tuple[float, float]:
    """(wall s, process CPU s) for one pass over ``batches``: train_throughput's timing with this optimizer."""
    model._bench_opt = opt  # type: ignore[attr-defined]  # where train_throughput.timed_pass finds it
    return throughput_timed_pass(model, forward, batches, train)


def bench_preset(name: str, batches: list[GraphBatch], reps: int, paths: list[str]) -> list[dict]:
    torch.manual_seed(0)
    base = ModelConfig.from_config({"preset": name, "accelerator": "torch"})
    template = ALIGNN(base)
    models = {}
    for key in paths:
        m = ALIGNN(dataclasses.replace(base, accelerator=PATHS[key].accelerator))
        m.load_state_dict(template.state_dict())
        assert m.accelerator == PATHS[key].accelerator, (key, m.accelerator)
        models[key] = (m, make_optimizer(m.parameters(), lr=1e-4, weight_decay=0.0))
    n_graphs = sum(b.n_graphs for b in batches)
    rows = []
    for mode in ("train", "infer"):
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
        for key in paths:  # warm-up (allocator, kernel build, first-call overheads)
            with PATHS[key].context():
                m, opt = models[key]
                timed_pass(m, PATHS[key].forward(m), opt, batches[:1], mode == "train")
        for _ in range(reps):
            for key in paths:
                with PATHS[key].context():
                    m, opt = models[key]
                    times[key].append(timed_pass(m, PATHS[key].forward(m), opt, batches, mode == "train"))
        gps = {k: n_graphs / statistics.median(w for w, _ in v) for k, v in times.items()}
        best = {k: n_graphs / min(w for w, _ in v) for k, v in times.items()}
        cpu_gps = {k: n_graphs / statistics.median(c for _, c in v) for k, v in times.items()}
        row = {
            "preset": name,
            "mode": mode,
            "graphs": n_graphs,
            "reps": reps,
            "gps": {k: round(v, 1) for k, v in gps.items()},
            "gps_best": {k: round(v, 1) for k, v in best.items()},
            "gps_cpu_time": {k: round(v, 1) for k, v in cpu_gps.items()},
            "wall_s_all_reps": {k: [round(w, 3) for w, _ in v] for k, v in times.items()},
        }
        ratios, ratios_best = {}, {}
        for fast, slow in (
            ("fused", "torch"),
            ("fused", "fused[torch-gemm]"),
            ("torch", "torch[fanout]"),
            ("torch[fanout]", "torch[general]"),
            ("torch", "torch[general]"),
            ("torch bf16", "torch[fanout] bf16"),
            ("torch[fanout] bf16", "torch[general] bf16"),
            ("torch bf16", "torch[general] bf16"),
        ):
            if fast in gps and slow in gps:
                ratios[f"{fast} / {slow}"] = round(gps[fast] / gps[slow], 3)
                ratios_best[f"{fast} / {slow}"] = round(best[fast] / best[slow], 3)
        row["ratios"], row["ratios_best"] = ratios, ratios_best
        rows.append(row)
        print(
            json.dumps({k: row[k] for k in ("preset", "mode", "gps_best", "ratios_best", "ratios")}),
            flush=True,
        )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["cpu_small", "paper"])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    p.add_argument("--shard", type=Path, default=Path("results/shared_accuracy/graphs/train/shard-0.h5"))
    p.add_argument(
        "--graphs", type=int, default=64, help="graphs per timed pass, in batches of the preset's batch size"
    )
    p.add_argument("--reps", type=int, default=5, help="timed passes per path (median reported)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--note", default="", help="stored with the results (e.g. what else ran on the machine)")
    p.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/conv_paths.json)")
    args = p.parse_args()
    tuned = tune_malloc_for_torch()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    from pipeline.nn.presets import PRESETS

    rows = []
    for name in args.presets:
        batch_size = PRESETS[name]["train"]["batch_size"]
        batches = real_batches(args.shard, batch_size, max(1, args.graphs // batch_size))
        sizes = [
            (b.n_graphs, b.atom_features.shape[0], b.edge_src.numel(), b.line_src.numel()) for b in batches
        ]
        print(f"# {name}: batches (graphs, atoms, bonds, angles) = {sizes}", file=sys.stderr)
        for row in bench_preset(name, batches, args.reps, args.paths):
            rows.append({**row, "batches": sizes})
    data = {
        "what": "graphs/s of each convolution code path (median of interleaved repeats); see the script",
        "note": args.note,
        "threads": args.threads,
        "malloc_tuning": bool(tuned),
        "kernels": repr(fused.load_library()),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    print(f"wrote {write_result('conv_paths', data, args.out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
