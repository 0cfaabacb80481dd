"""train stage: fit the ALIGNN DOS model on graph shards -> results/train/.

Outputs (in ``--out-dir``):
- ``model.pt``: the best-on-validation weights with the model settings (what predict loads);
- ``history.parquet``: one row per epoch (schema ``pipeline.schemas.TRAIN_HISTORY``);
- ``checkpoint.pt``: the state after the last finished epoch (model, optimizer, scheduler, RNG, early-stopping
  counters, history). A run that is killed and restarted with the same settings resumes from it and finishes with
  the same weights as an uninterrupted run (batch order depends only on the seed and the epoch number). A
  truncated or corrupt checkpoint is moved to ``checkpoint.pt.corrupt`` (with a warning) and training starts over.

Model files are data, not code: both files hold tensors and plain values only and are read with
``torch.load(weights_only=True)`` (``pipeline.nn.modelfile``); a file that holds anything else is refused. ``model.pt``
records the provenance of its inputs (``pipeline.provenance``: k, cutoff, atom features, DOS grid, copied from the
training shards, which must all agree, plus the model's radial-basis settings); predict checks shards against it.

Device: CUDA when available (``--device`` overrides); ``train.precision`` bf16 or fp16 (CUDA) trains under
``torch.autocast`` (``pipeline.nn.precision``).
Shards are read lazily in blocks of 1,024 graphs (``pipeline.data.loader``), so memory stays bounded whatever the
dataset size, unless ``train.cache: true`` keeps the decoded graphs in memory (small datasets, fewer reads).
Settings: ``model.preset`` (paper, cpu_medium, cpu_small, demo; see ``pipeline/nn/presets.py``) supplies every model
and training value; keys in the ``model``/``train`` config sections (or ``--model``/``--train`` JSON) override it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from pipeline.data.batch import GraphBatch
from pipeline.data.shards import ShardRecord, collate
from pipeline.io import atomic_path, write_parquet
from pipeline.nn import precision
from pipeline.nn.losses import SpectrumLoss
from pipeline.nn.model import ALIGNN, EnsembleALIGNN, ModelConfig, count_parameters
from pipeline.nn.modelfile import CorruptModelFileError, ModelFileError, UnsafeModelFileError, read_checkpoint
from pipeline.nn.presets import resolve
from pipeline.provenance import InputProvenance, ProvenanceError, agreed, model_provenance
from pipeline.runtime import tune_malloc_for_torch
from pipeline.schemas import TRAIN_HISTORY


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the ``train`` part of a preset, overridable in the ``train`` config section)."""

    epochs: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    loss: str = "mse"  # "mse" (paper) or "l1"
    scheduler: str = "onecycle"  # "onecycle" (alignn's default), "cosine" or "constant"
    seed: int = 0
    early_stopping: int = 0  # stop after this many epochs without a better val MAE; 0 = off
    precision: str = "fp32"  # fp32, bf16 or fp16 (CUDA only): torch.autocast, see pipeline/nn/precision.py
    cache: bool = False  # keep decoded graphs in memory instead of re-reading shards every epoch
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    gpus: int = 0  # what the Snakemake rule asks the scheduler for; the stage itself uses CUDA when visible
    ensemble: int = 1  # models in the seed ensemble; member i trains with seed + i (pipeline/nn/ensemble.py)
    # property terms of the loss (pipeline/nn/losses.py): weights of |C_V|, |S_vib| per mode and of the negative
    # fraction, and the temperatures (K) of the C_V and S_vib terms; weights 0 = the spectral loss alone
    weight_cv: float = 0.0
    weight_s_vib: float = 0.0
    weight_negative: float = 0.0
    property_temperatures: list[float] = field(default_factory=lambda: [100.0, 300.0])

    def __post_init__(self) -> None:
        object.__setattr__(self, "property_temperatures", [float(t) for t in self.property_temperatures])
        # the schema's rules for the train section hold for Python callers of fit() too (epochs >= 1, ...)
        from pipeline.config import validate_section

        validate_section("train", asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown train setting(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


class GraphData:
    """A set of labelled graphs that yields shuffled ``GraphBatch`` es.

    ``epoch_batches(batch_size, generator)`` must yield every graph exactly once; its order may depend only on the
    generator, so that a resumed run sees the same batches as an uninterrupted one.
    """

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def epoch_batches(self, batch_size: int, generator: torch.Generator | None) -> Iterator[GraphBatch]:
        raise NotImplementedError  # pragma: no cover - interface


class InMemoryGraphs(GraphData):
    """Labelled graphs held in memory (``pipeline.data.shards.ShardRecord``), collated on the fly (tests, small data)."""

    def __init__(self, records: Sequence[ShardRecord]):
        self.records = list(records)
        self.ids = [r.id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def epoch_batches(self, batch_size: int, generator: torch.Generator | None) -> Iterator[GraphBatch]:
        n = len(self.records)
        order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
        for start in range(0, n, batch_size):
            yield collate([self.records[i] for i in order[start : start + batch_size]])


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's RNG states as tensors and plain values: loadable with ``weights_only=True``
    (``pipeline.nn.modelfile``), unlike the tuples and arrays ``random.getstate``/``np.random.get_state`` return."""
    py_version, py_internal, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    keys = npy["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """Batch order of an epoch depends only on (seed, epoch): the key to exact resumption."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _loss_fn(name: str) -> nn.Module:
    if name == "mse":
        return nn.MSELoss()
    if name == "l1":
        return nn.L1Loss()
    raise ValueError(f"train.loss must be 'mse' or 'l1', got {name!r}")


def make_optimizer(parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, with torch's fused (single-kernel) implementation where this torch has it (CPU since 2.4, CUDA):
    the same update as the default per-tensor loop up to float rounding, about 4x faster here (0.5 vs 2.0 ms per
    step for the cpu_small model, a few percent of a training step)."""
    params = list(parameters)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device/dtype without a fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.3)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"train.scheduler must be onecycle, cosine or constant, got {cfg.scheduler!r}")


def fingerprint(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_ids: Sequence[str],
    provenance: InputProvenance | None = None,
) -> str:
    """What a checkpoint must match to be resumed: settings, training set and how its graphs were built
    (threads/cache do not matter)."""
    t = asdict(train_cfg)
    for key in ("threads", "cache", "gpus", "ensemble"):  # how, not what, is trained (a member is one model)
        t.pop(key)
    what = {"model": model_cfg.to_dict(), "train": t, "ids": sorted(train_ids)}
    if provenance is not None and provenance.attrs():
        what["inputs"] = provenance.to_dict()
    blob = json.dumps(what, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@torch.no_grad()
def evaluate(model: nn.Module, data: GraphData, batch_size: int, device: torch.device) -> dict[str, float]:
    """Mean squared error and spectral MAE (mean over materials of the mean |error| over bins)."""
    model.eval()
    se = ae = 0.0
    n_values = 0
    for batch in data.epoch_batches(batch_size, None):
        batch = batch.to(device)
        pred = model(batch).float()
        diff = pred - batch.targets.float()
        se += float((diff**2).sum())
        ae += float(diff.abs().sum())
        n_values += diff.numel()
    n_values = max(n_values, 1)
    return {"mse": se / n_values, "mae": ae / n_values}


class SimulatedKill(RuntimeError):
    """Raised by ``fit(..., kill_after_steps=n)``: a test's stand-in for SIGKILL in the middle of an epoch."""


@dataclass
class FitResult:
    best_epoch: int
    best_val_mae: float
    epochs_run: int
    history: pd.DataFrame
    model_path: Path


def fit(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_data: GraphData,
    val_data: GraphData,
    out_dir: str | Path,
    train_ids: Sequence[str] = (),
    device: torch.device | None = None,
    progress: bool = True,
    kill_after_steps: int | None = None,
    member: int = 0,
    provenance: InputProvenance | None = None,
) -> FitResult:
    """Train, checkpointing every epoch into ``out_dir``; resume from ``out_dir/checkpoint.pt`` when it matches.

    ``member`` only labels the history rows (the ensemble member this run is; its seed is ``train_cfg.seed``).
    ``provenance``: how the training graphs were built (``pipeline.provenance``), recorded in ``model.pt``.
    A truncated or corrupt ``checkpoint.pt`` is moved to ``checkpoint.pt.corrupt`` and training starts over; one
    that holds anything but plain data raises :class:`pipeline.nn.modelfile.UnsafeModelFileError`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or pick_device()
    if train_cfg.threads > 0:
        torch.set_num_threads(train_cfg.threads)
    autocast = precision.autocast(train_cfg.precision, device)  # raises for fp16 without CUDA
    fp = fingerprint(model_cfg, train_cfg, train_ids, provenance)

    seed_everything(train_cfg.seed)
    model = ALIGNN(model_cfg).to(device)
    opt = make_optimizer(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / train_cfg.batch_size)
    sched = _make_scheduler(opt, train_cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaling(train_cfg.precision))
    loss_fn = SpectrumLoss(
        _loss_fn(train_cfg.loss),
        train_cfg.weight_cv,
        train_cfg.weight_s_vib,
        train_cfg.weight_negative,
        train_cfg.property_temperatures,
    ).to(device)

    start_epoch, best_mae, best_epoch, stale, rows = 1, math.inf, 0, 0, []
    best_state: dict[str, torch.Tensor] | None = None
    ckpt_path = out / "checkpoint.pt"
    ckpt = _read_resumable(ckpt_path, device) if ckpt_path.exists() else None
    if ckpt is not None:
        if ckpt.get("fingerprint") == fp:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            scaler.load_state_dict(ckpt["scaler"])
            _set_rng_state(ckpt["rng"])
            start_epoch = ckpt["epoch"] + 1
            best_mae, best_epoch, stale = ckpt["best_val_mae"], ckpt["best_epoch"], ckpt["stale"]
            best_state, rows = ckpt["best_state"], ckpt["history"]
            print(f"resuming from {ckpt_path} after epoch {ckpt['epoch']}", file=sys.stderr)
        else:
            print(f"ignoring {ckpt_path}: it belongs to other settings or data", file=sys.stderr)

    print(
        f"training {count_parameters(model):,} parameters on {device} ({len(train_data)} train / "
        f"{len(val_data)} val graphs, {train_cfg.epochs} epochs, batch {train_cfg.batch_size})",
        file=sys.stderr,
    )
    steps = 0
    epoch = start_epoch - 1
    for epoch in range(start_epoch, train_cfg.epochs + 1):
        if train_cfg.early_stopping and stale >= train_cfg.early_stopping:
            break
        model.train()
        t0 = time.perf_counter()
        loss_sum, n_graphs = 0.0, 0
        bar = tqdm(
            total=len(train_data),
            desc=f"epoch {epoch}/{train_cfg.epochs}",
            unit="graph",
            disable=None if progress else True,  # None: a bar only on a terminal
            mininterval=1.0,
            leave=False,
        )
        for batch in train_data.epoch_batches(train_cfg.batch_size, _epoch_generator(train_cfg.seed, epoch)):
            if kill_after_steps is not None and steps >= kill_after_steps:
                bar.close()
                raise SimulatedKill(f"simulated kill after {steps} steps (epoch {epoch})")
            batch = batch.to(device)
            opt.zero_grad(set_to_none=True)
            with autocast():
                pred = model(batch)
                loss = loss_fn(pred.float(), batch.targets.float())
            scaler.scale(loss).backward()
            if train_cfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            steps += 1
            loss_sum += float(loss.detach()) * batch.n_graphs
            n_graphs += batch.n_graphs
            bar.update(batch.n_graphs)
            bar.set_postfix(
                loss=f"{loss_sum / n_graphs:.4f}", gps=f"{n_graphs / (time.perf_counter() - t0):.0f}"
            )
        bar.close()
        train_seconds = time.perf_counter() - t0
        val = evaluate(model, val_data, train_cfg.batch_size, device)
        improved = val["mae"] < best_mae
        if improved:
            best_mae, best_epoch, stale = val["mae"], epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        rows.append(
            {
                "member": member,
                "epoch": epoch,
                "train_loss": loss_sum / max(n_graphs, 1),
                "val_loss": val["mse"],
                "val_mae": val["mae"],
                "lr": opt.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
                "graphs_per_s": n_graphs / max(train_seconds, 1e-9),
                "is_best": improved,
            }
        )
        print(
            f"epoch {epoch:4d}  train {rows[-1]['train_loss']:.5f}  val mse {val['mse']:.5f}  val MAE {val['mae']:.5f}"
            f"{' *' if improved else ''}  {rows[-1]['graphs_per_s']:.0f} graphs/s",
            file=sys.stderr,
            flush=True,
        )
        _save(
            ckpt_path,
            {
                "fingerprint": fp,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": _rng_state(),
                "best_val_mae": best_mae,
                "best_epoch": best_epoch,
                "stale": stale,
                "best_state": best_state,
                "history": rows,
            },
        )

    if best_state is None:  # no epoch ran (epochs = 0)
        best_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    model_path = out / "model.pt"
    _save(
        model_path,
        {
            "model_config": model_cfg.to_dict(),
            "train_config": asdict(train_cfg),
            "state_dict": best_state,
            "best_epoch": best_epoch,
            "best_val_mae": best_mae,
            "member": member,
            "provenance": model_provenance(provenance or InputProvenance(), model_cfg.to_dict()),
        },
    )
    history = pd.DataFrame(rows, columns=TRAIN_HISTORY.names)
    write_parquet(history, out / "history.parquet", TRAIN_HISTORY)
    return FitResult(best_epoch, best_mae, len(rows), history, model_path)


def _read_resumable(ckpt_path: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None after moving a truncated/corrupt one aside (with a warning)."""
    try:
        return read_checkpoint(ckpt_path, map_location=device)
    except CorruptModelFileError as e:
        aside = ckpt_path.with_name(ckpt_path.name + ".corrupt")
        ckpt_path.replace(aside)
        print(f"warning: {e}; moved it to {aside} and training from scratch", file=sys.stderr)
        return None
    except UnsafeModelFileError as e:  # refused, and left where it is for a person to look at
        raise UnsafeModelFileError(
            f"{e}; a checkpoint.pt of a pipeline version from before model files were plain data is refused "
            "too: delete it to train from scratch"
        ) from None


def _save(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> ALIGNN | EnsembleALIGNN:
    """``model.pt`` -> model in eval mode (see :func:`model_from_checkpoint`); read as data only
    (:func:`pipeline.nn.modelfile.read_checkpoint`)."""
    return model_from_checkpoint(read_checkpoint(path, map_location=device), device)


def model_from_checkpoint(
    ckpt: dict[str, Any], device: torch.device | str = "cpu"
) -> ALIGNN | EnsembleALIGNN:
    """A ``model.pt`` dict -> model in eval mode: an ALIGNN for one trained model (a member's model.pt, or an
    ensemble file with one member), an :class:`EnsembleALIGNN` averaging the members otherwise."""
    config = ModelConfig.from_dict(ckpt["model_config"])
    states = [m["state_dict"] for m in ckpt["members"]] if "members" in ckpt else [ckpt["state_dict"]]
    models = []
    for state in states:
        model = ALIGNN(config).to(device)
        model.load_state_dict(state)
        models.append(model.eval())
    return models[0] if len(models) == 1 else EnsembleALIGNN(models).eval()


def build_parser() -> argparse.ArgumentParser:
    from pipeline.config import (
        SchemaArgumentParser,
        config_file,
        non_negative_int,
        schema_json_option,
        schema_option,
    )

    p = SchemaArgumentParser(
        prog="python -m pipeline train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train-shards", nargs="+", required=True, help="HDF5 graph shards of the training split")
    p.add_argument("--val-shards", nargs="+", required=True, help="HDF5 graph shards of the validation split")
    p.add_argument("--out-dir", required=True, help="writes model.pt, history.parquet, checkpoint.pt here")
    p.add_argument(
        "--config",
        type=config_file,
        help="pipeline config YAML (validated); its model/train sections are used (see --model/--train)",
    )
    schema_json_option(p, "--model", key="model", help='model section, e.g. \'{"preset": "cpu_small"}\'')
    schema_json_option(p, "--train", key="train", help='train section, e.g. \'{"epochs": 10, "seed": 1}\'')
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--member",
        type=non_negative_int,
        default=0,
        help="ensemble member to train (0..train.ensemble-1): trains with seed train.seed + member (default 0)",
    )
    schema_option(
        p, "--threads", key="train.threads", help="torch CPU threads (0: train.threads or torch default)"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no tqdm bars (per-epoch lines are still printed)"
    )
    return p


def settings_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """Parsed arguments -> settings: ``--config`` sections, then ``--model``/``--train`` (JSON objects, already
    checked against the schema by the parser), the preset merged in; raises :class:`pipeline.config.ConfigError`
    naming the key when the merged settings break the schema."""
    model_section: dict[str, Any] = {}
    train_section: dict[str, Any] = {}
    if args.config:
        model_section, train_section = dict(args.config["model"]), dict(args.config["train"])
    model_section.update(args.model)
    train_section.update(args.train)
    if args.threads:
        train_section["threads"] = args.threads
    m, t = resolve(model_section, train_section)
    train_cfg = TrainConfig.from_dict(t)
    return ModelConfig.from_dict(m), replace(train_cfg, seed=train_cfg.seed + args.member)


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # preset + overrides: an argument error too, before any data is read
        model_cfg, train_cfg = settings_from_args(args)
    except ConfigError as exc:
        parser.error(f"argument --{exc.key.split('.')[0]}: {exc.problem} (config key {exc.key})")
    tune_malloc_for_torch()  # see pipeline/runtime.py
    from pipeline.data.loader import ShardGraphs

    train_data = ShardGraphs(args.train_shards, cache=train_cfg.cache)
    val_data = ShardGraphs(args.val_shards, cache=train_cfg.cache)
    for name, data, paths in (
        ("training", train_data, args.train_shards),
        ("validation", val_data, args.val_shards),
    ):
        if len(data) == 0:
            print(f"error: no graphs in the {name} shards {paths}", file=sys.stderr)
            return 1
        if not data.labelled:
            print(
                f"error: the {name} shards {paths} have no targets (unlabelled, like the pool)",
                file=sys.stderr,
            )
            return 1
    try:
        shards = [(r.path, r.provenance) for r in (*train_data.readers, *val_data.readers)]
        result = fit(
            model_cfg,
            train_cfg,
            train_data,
            val_data,
            args.out_dir,
            train_ids=train_data.ids,
            device=pick_device(args.device),
            progress=not args.no_progress,
            member=args.member,
            provenance=agreed(shards, "the training and validation shards"),
        )
    except (ModelFileError, ProvenanceError) as e:  # an unsafe checkpoint.pt, shards built differently
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"best val MAE {result.best_val_mae:.5f} at epoch {result.best_epoch} of {result.epochs_run}; "
        f"model -> {result.model_path}",
        file=sys.stderr,
    )
    return 0
