"""Training the ALIGNN DOS model (the train stage's library; the CLI is :mod:`pipeline.stages.train`).

:func:`fit` trains one model (an ensemble member) into ``out_dir``:

- ``model.pt``: the best-on-validation weights with the model settings (what predict loads);
- ``history.parquet``: one row per epoch (schema ``pipeline.schemas.TRAIN_HISTORY``);
- ``checkpoint.pt``: the state after the last finished epoch (model, optimizer, scheduler, RNG, early-stopping
  counters, history). A run that is killed and restarted with the same settings resumes from it and finishes with
  the same weights as an uninterrupted run (batch order depends only on the seed and the epoch number). A
  truncated or corrupt checkpoint is moved to ``checkpoint.pt.corrupt`` (with a warning) and training starts over.

It is built from pieces that each do one thing: :func:`start_run` (seeded model, optimizer, schedule),
:func:`resume` (restore a matching ``checkpoint.pt``), :func:`train_epoch` (one pass over the training graphs, a
:func:`train_step` per batch), :func:`pipeline.nn.inference.evaluate` (validation), :func:`record_epoch` (history,
best weights, early-stopping counter), :func:`save_checkpoint` and :func:`write_model`.

Model files are data, not code: both files hold tensors and plain values only and are read with
``torch.load(weights_only=True)`` (``pipeline.nn.modelfile``). ``model.pt`` records the provenance of its inputs
(``pipeline.data.provenance``), which predict checks shards against. Settings: :class:`TrainConfig` (the ``train``
config section) and :class:`pipeline.nn.model.ModelConfig` (``model``); ``model.preset`` supplies the keys that have
no schema default (:mod:`pipeline.nn.presets`).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from pipeline.config import ConfigError, ConfigNode
from pipeline.data.batch import GraphBatch
from pipeline.data.provenance import InputProvenance, agreed, model_provenance
from pipeline.data.shards import ShardRecord, collate
from pipeline.io import atomic_path, write_parquet
from pipeline.nn import precision
from pipeline.nn.inference import evaluate, pick_device
from pipeline.nn.losses import SpectrumLoss
from pipeline.nn.model import ALIGNN, ModelConfig, count_parameters
from pipeline.nn.modelfile import CorruptModelFileError, UnsafeModelFileError, read_checkpoint
from pipeline.nn.presets import PRESETS, train_values
from pipeline.schemas import TRAIN_HISTORY


@dataclass(frozen=True)
class TrainConfig(ConfigNode):
    """The ``train`` config section: training hyper-parameters and how the run uses the machine.

    Meaning, bounds and defaults: pipeline/config.schema.yaml. The keys without a schema default (epochs,
    batch_size, lr, weight_decay, loss) come from the preset ``model.preset`` names unless given:
    ``TrainConfig.from_config({"epochs": 10}, preset="demo")``. ``threads``, ``cache``, ``gpus`` and ``ensemble``
    are how a model is trained, not what is trained (:func:`fingerprint` leaves them out).
    """

    KEY: ClassVar[str] = "train"
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    loss: str
    scheduler: str
    early_stopping: int
    weight_cv: float
    weight_s_vib: float
    weight_negative: float
    weight_stability_head: float
    property_temperatures: tuple[float, ...]
    precision: str
    cache: bool
    grad_clip: float
    ema_decay: float
    threads: int
    ensemble: int
    gpus: int

    def __post_init__(self) -> None:
        # floats, as model files and checkpoint fingerprints have always recorded them ([100.0, 300.0])
        if self.property_temperatures is not None:
            temperatures = tuple(float(t) for t in self.property_temperatures)
            object.__setattr__(self, "property_temperatures", temperatures)

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None = None, preset: str | None = None) -> TrainConfig:
        """The section from (partial) ``values``: the keys preset ``preset`` (None: the schema's default
        ``model.preset``) supplies, then the schema defaults fill what is not given; validated (ConfigError)."""
        if preset is not None and preset not in PRESETS:
            raise ConfigError(
                "model.preset", f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}"
            )
        return super().from_config(train_values(values, preset))


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
    the same update as the default per-tensor loop up to float rounding, in one pass over the parameters instead of
    one per tensor (benchmarks/train_throughput.py measures the training step it is part of)."""
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


def _loss(cfg: TrainConfig, model_cfg: ModelConfig) -> SpectrumLoss:
    return SpectrumLoss(
        _loss_fn(cfg.loss),
        cfg.weight_cv,
        cfg.weight_s_vib,
        cfg.weight_negative,
        cfg.property_temperatures,
        cfg.weight_stability_head if model_cfg.stability_head != "none" else 0.0,
    )


def fingerprint(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_ids: Sequence[str],
    provenance: InputProvenance | None = None,
) -> str:
    """What a checkpoint must match to be resumed: settings, training set and how its graphs were built
    (threads/cache do not matter)."""
    t = train_cfg.to_config()
    for key in ("threads", "cache", "gpus", "ensemble"):  # how, not what, is trained (a member is one model)
        t.pop(key)
    if not t["ema_decay"]:  # off: the fingerprint of the settings from before the key existed
        t.pop("ema_decay")
    if model_cfg.stability_head == "none":  # no head: the weight is not used
        t.pop("weight_stability_head")
    what = {"model": model_cfg.to_dict(), "train": t, "ids": sorted(train_ids)}
    if provenance is not None and provenance.attrs():
        what["inputs"] = provenance.to_dict()
    blob = json.dumps(what, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class TrainRun:
    """The state of one training run: what ``checkpoint.pt`` saves after every epoch and :func:`resume` restores.

    ``epoch`` is the last finished epoch (0 before the first); ``stale`` the epochs since the best validation MAE
    (early stopping); ``best_state`` the best epoch's weights (on the CPU); ``history`` one dict per epoch;
    ``ema`` the moving average of the weights when ``train.ema_decay`` is on (None otherwise)."""

    model: ALIGNN
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None = None
    epoch: int = 0
    best_val_mae: float = math.inf
    best_epoch: int = 0
    stale: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def start_run(model_cfg: ModelConfig, train_cfg: TrainConfig, n_train: int, device: torch.device) -> TrainRun:
    """A fresh run: every RNG seeded with ``train.seed``, then the model's initial weights, the optimizer and the
    learning-rate schedule over ``epochs`` x (batches of ``n_train`` graphs)."""
    seed_everything(train_cfg.seed)
    model = ALIGNN(model_cfg).to(device)
    opt = make_optimizer(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    steps_per_epoch = math.ceil(n_train / train_cfg.batch_size)
    sched = _make_scheduler(opt, train_cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaling(train_cfg.precision))
    return TrainRun(model, opt, sched, scaler, ema=_averaged(model, train_cfg.ema_decay))


def _averaged(model: ALIGNN, decay: float) -> AveragedModel | None:
    """torch's exponential moving average of ``model``'s weights, BatchNorm statistics included (None when off)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def scored_model(run: TrainRun) -> ALIGNN:
    """The weights validation scores and ``model.pt`` keeps: the moving average when on, else the raw model."""
    return run.ema.module if run.ema is not None else run.model


def checkpoint(run: TrainRun, fp: str) -> dict[str, Any]:
    """The ``checkpoint.pt`` dict of ``run`` (plain data: tensors, dicts, lists, numbers) with the RNG states now."""
    return {
        "fingerprint": fp,
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": _rng_state(),
        "best_val_mae": run.best_val_mae,
        "best_epoch": run.best_epoch,
        "stale": run.stale,
        "best_state": run.best_state,
        "history": run.history,
        **({"ema": run.ema.state_dict()} if run.ema is not None else {}),
    }


def save_checkpoint(path: Path, run: TrainRun, fp: str) -> None:
    _save(path, checkpoint(run, fp))


def restore(run: TrainRun, ckpt: Mapping[str, Any]) -> None:
    """Put ``run`` (and the RNGs) in the state a :func:`checkpoint` dict recorded."""
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.scaler.load_state_dict(ckpt["scaler"])
    _set_rng_state(ckpt["rng"])
    run.epoch = ckpt["epoch"]
    run.best_val_mae, run.best_epoch, run.stale = ckpt["best_val_mae"], ckpt["best_epoch"], ckpt["stale"]
    run.best_state, run.history = ckpt["best_state"], ckpt["history"]
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])


def resume(run: TrainRun, ckpt_path: Path, fp: str, device: torch.device) -> bool:
    """Restore ``run`` from ``ckpt_path`` when it exists and its fingerprint is ``fp``; True when it did."""
    ckpt = _read_resumable(ckpt_path, device) if ckpt_path.exists() else None
    if ckpt is None:
        return False
    if ckpt.get("fingerprint") != fp:
        print(f"ignoring {ckpt_path}: it belongs to other settings or data", file=sys.stderr)
        return False
    restore(run, ckpt)
    print(f"resuming from {ckpt_path} after epoch {ckpt['epoch']}", file=sys.stderr)
    return True


def train_step(
    run: TrainRun,
    batch: GraphBatch,
    loss_fn: nn.Module,
    autocast: Callable[[], Any],
    grad_clip: float,
) -> float:
    """One optimizer step on ``batch`` (already on the device); returns its loss."""
    opt, scaler = run.optimizer, run.scaler
    opt.zero_grad(set_to_none=True)
    with autocast():
        pred = run.model(batch)
        loss = loss_fn(pred.float(), batch.targets.float())
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return float(loss.detach())


def train_epoch(
    run: TrainRun,
    data: GraphData,
    cfg: TrainConfig,
    epoch: int,
    loss_fn: nn.Module,
    autocast: Callable[[], Any],
    device: torch.device,
    progress: bool,
) -> tuple[float, int]:
    """Epoch ``epoch``: a :func:`train_step` per batch, in the order seeded by (seed, epoch). Returns (mean
    training loss per graph, graphs seen)."""
    run.model.train()
    t0 = time.perf_counter()
    loss_sum, n_graphs = 0.0, 0
    with tqdm(
        total=len(data),
        desc=f"epoch {epoch}/{cfg.epochs}",
        unit="graph",
        disable=None if progress else True,  # None: a bar only on a terminal
        mininterval=1.0,
        leave=False,
    ) as bar:
        for batch in data.epoch_batches(cfg.batch_size, _epoch_generator(cfg.seed, epoch)):
            batch = batch.to(device)
            loss = train_step(run, batch, loss_fn, autocast, cfg.grad_clip)
            loss_sum += loss * batch.n_graphs
            n_graphs += batch.n_graphs
            bar.update(batch.n_graphs)
            bar.set_postfix(
                loss=f"{loss_sum / n_graphs:.4f}", gps=f"{n_graphs / (time.perf_counter() - t0):.0f}"
            )
    return loss_sum / max(n_graphs, 1), n_graphs


def record_epoch(
    run: TrainRun,
    epoch: int,
    member: int,
    train_loss: float,
    val: Mapping[str, float],
    seconds: float,
    graphs_per_s: float,
) -> bool:
    """Book epoch ``epoch`` into ``run``: its history row, and the best weights and early-stopping counter from
    its validation MAE (of :func:`scored_model`). Returns whether it improved on the best."""
    improved = val["mae"] < run.best_val_mae
    if improved:
        run.best_val_mae, run.best_epoch, run.stale = val["mae"], epoch, 0
        run.best_state = {k: v.detach().cpu().clone() for k, v in scored_model(run).state_dict().items()}
    else:
        run.stale += 1
    run.epoch = epoch
    run.history.append(
        {
            "member": member,
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val["mse"],
            "val_mae": val["mae"],
            "lr": run.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "graphs_per_s": graphs_per_s,
            "is_best": improved,
        }
    )
    return improved


def stops_early(run: TrainRun, cfg: TrainConfig) -> bool:
    """``train.early_stopping`` epochs in a row without a better validation MAE (never when it is 0)."""
    return bool(cfg.early_stopping) and run.stale >= cfg.early_stopping


def write_model(
    path: Path,
    run: TrainRun,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    member: int,
    provenance: InputProvenance | None,
) -> None:
    """``model.pt``: the best epoch's weights (the last ones if no epoch ran) with the settings and provenance."""
    best_state = run.best_state
    if best_state is None:  # no epoch ran (epochs = 0)
        best_state = {k: v.detach().cpu() for k, v in scored_model(run).state_dict().items()}
    _save(
        path,
        {
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_config(),
            "state_dict": best_state,
            "best_epoch": run.best_epoch,
            "best_val_mae": run.best_val_mae,
            "member": member,
            "provenance": model_provenance(provenance or InputProvenance(), model_cfg.to_dict()),
        },
    )


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
    member: int = 0,
    provenance: InputProvenance | None = None,
) -> FitResult:
    """Train, checkpointing every epoch into ``out_dir``; resume from ``out_dir/checkpoint.pt`` when it matches.

    ``member`` only labels the history rows (the ensemble member this run is; its seed is ``train_cfg.seed``).
    ``provenance``: how the training graphs were built (``pipeline.data.provenance``), recorded in ``model.pt``.
    A truncated or corrupt ``checkpoint.pt`` is moved to ``checkpoint.pt.corrupt`` and training starts over; one
    that holds anything but plain data raises :class:`pipeline.nn.modelfile.UnsafeModelFileError`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or pick_device()
    if train_cfg.threads > 0:
        torch.set_num_threads(train_cfg.threads)
    autocast = precision.autocast(train_cfg.precision, device)  # raises for fp16 without CUDA
    fp = fingerprint(model_cfg, train_cfg, train_ids, provenance)

    run = start_run(model_cfg, train_cfg, len(train_data), device)
    loss_fn = _loss(train_cfg, model_cfg).to(device)
    ckpt_path = out / "checkpoint.pt"
    resume(run, ckpt_path, fp, device)
    print(
        f"training {count_parameters(run.model):,} parameters on {device} ({len(train_data)} train / "
        f"{len(val_data)} val graphs, {train_cfg.epochs} epochs, batch {train_cfg.batch_size})",
        file=sys.stderr,
    )
    for epoch in range(run.epoch + 1, train_cfg.epochs + 1):
        if stops_early(run, train_cfg):
            break
        t0 = time.perf_counter()
        train_loss, n_graphs = train_epoch(
            run, train_data, train_cfg, epoch, loss_fn, autocast, device, progress
        )
        train_seconds = time.perf_counter() - t0
        val = evaluate(scored_model(run), val_data.epoch_batches(train_cfg.batch_size, None), device)
        improved = record_epoch(
            run,
            epoch,
            member,
            train_loss,
            val,
            seconds=time.perf_counter() - t0,
            graphs_per_s=n_graphs / max(train_seconds, 1e-9),
        )
        row = run.history[-1]
        print(
            f"epoch {epoch:4d}  train {row['train_loss']:.5f}  val mse {val['mse']:.5f}  val MAE {val['mae']:.5f}"
            f"{' *' if improved else ''}  {row['graphs_per_s']:.0f} graphs/s",
            file=sys.stderr,
            flush=True,
        )
        save_checkpoint(ckpt_path, run, fp)

    model_path = out / "model.pt"
    write_model(model_path, run, model_cfg, train_cfg, member, provenance)
    history = pd.DataFrame(run.history, columns=TRAIN_HISTORY.names)
    write_parquet(history, out / "history.parquet", TRAIN_HISTORY)
    return FitResult(run.best_epoch, run.best_val_mae, len(run.history), history, model_path)


class NoTrainingDataError(ValueError):
    """Training or validation shards without graphs, or without targets (unlabelled, like the pool)."""


def train_member(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_shards: Sequence[str | Path],
    val_shards: Sequence[str | Path],
    out_dir: str | Path,
    member: int,
    device: torch.device,
    progress: bool = True,
) -> FitResult:
    """Ensemble member ``member`` (seed ``train.seed + member``) trained on graph shards (:func:`fit`), read
    lazily (``pipeline.data.loader``; ``train.cache`` keeps them in memory).

    Raises :class:`NoTrainingDataError` for shards without graphs or targets,
    :class:`pipeline.data.provenance.ProvenanceError` for shards built differently, and
    :class:`pipeline.nn.modelfile.UnsafeModelFileError` for a ``checkpoint.pt`` that is not plain data."""
    from pipeline.data.loader import ShardGraphs

    train_data = ShardGraphs(train_shards, cache=train_cfg.cache)
    val_data = ShardGraphs(val_shards, cache=train_cfg.cache)
    for name, data, paths in (("training", train_data, train_shards), ("validation", val_data, val_shards)):
        paths = [str(p) for p in paths]
        if len(data) == 0:
            raise NoTrainingDataError(f"no graphs in the {name} shards {paths}")
        if not data.labelled:
            raise NoTrainingDataError(
                f"the {name} shards {paths} have no targets (unlabelled, like the pool)"
            )
    shards = [(r.path, r.provenance) for r in (*train_data.readers, *val_data.readers)]
    return fit(
        model_cfg,
        replace(train_cfg, seed=train_cfg.seed + member),
        train_data,
        val_data,
        out_dir,
        train_ids=train_data.ids,
        device=device,
        progress=progress,
        member=member,
        provenance=agreed(shards, "the training and validation shards"),
    )


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
