"""Batched inference: the one loop that runs a trained model over graph batches, and model files -> models.

:func:`iter_predictions` is that loop (eval mode, no autograd, ``torch.autocast`` for bf16/fp16 through
:mod:`pipeline.nn.precision`, float32 outputs); everything that runs a model without training it goes through it:

- :func:`predict_batches`: ids and predictions as one array (the predict stage, the direct baselines, benchmarks);
- :func:`evaluate`: MSE and spectral MAE against the batches' targets (the training loop's validation and the
  ensemble stage's scoring of its members).

:func:`load_model` / :func:`model_from_checkpoint` build the model a ``model.pt`` describes (read as data only,
:mod:`pipeline.nn.modelfile`): an ALIGNN, or an :class:`~pipeline.nn.model.EnsembleALIGNN` averaging the members of
an ensemble file, running with the given ``model.accelerator``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from pipeline.data.batch import GraphBatch
from pipeline.nn.model import ALIGNN, EnsembleALIGNN, ModelConfig
from pipeline.nn.modelfile import read_checkpoint
from pipeline.nn.precision import autocast


class Predictions(NamedTuple):
    """What :func:`predict_batches` returns: graph ids and their (n, out_dim) float32 predictions, in batch order."""

    ids: list[str]
    values: np.ndarray


def iter_predictions(
    model: torch.nn.Module, batches: Iterable[GraphBatch], device: torch.device, precision: str
) -> Iterator[tuple[GraphBatch, torch.Tensor]]:
    """Run ``model`` in eval mode over ``batches``: yields (the batch on ``device``, its float32 predictions on
    ``device``) per batch. ``precision`` fp32, bf16 or fp16 (:func:`pipeline.nn.precision.autocast`; an unknown
    precision or fp16 without CUDA raises ``ValueError`` here, before any batch is read)."""
    context = autocast(precision, device)
    model.eval()
    return _predictions(model, batches, device, context)


def _predictions(
    model: torch.nn.Module,
    batches: Iterable[GraphBatch],
    device: torch.device,
    context: Callable[[], contextlib.AbstractContextManager],
) -> Iterator[tuple[GraphBatch, torch.Tensor]]:
    for batch in batches:
        batch = batch.to(device)
        with torch.no_grad(), context():
            pred = model(batch).float()
        yield batch, pred


def predict_batches(
    model: torch.nn.Module,
    batches: Iterable[GraphBatch],
    device: torch.device,
    precision: str,
    *,
    progress: tqdm | None = None,
) -> Predictions:
    """Predictions of ``model`` for every graph of ``batches`` (see :func:`iter_predictions`), moved to the CPU;
    ``progress`` (a tqdm bar) advances by each batch's graphs."""
    ids: list[str] = []
    outs: list[np.ndarray] = []
    for batch, pred in iter_predictions(model, batches, device, precision):
        ids.extend(batch.ids)
        outs.append(pred.cpu().numpy())
        if progress is not None:
            progress.update(batch.n_graphs)
    if not outs:
        return Predictions(
            ids, np.zeros((0, getattr(getattr(model, "config", None), "out_dim", 0)), np.float32)
        )
    return Predictions(ids, np.concatenate(outs).astype(np.float32))


def evaluate(model: torch.nn.Module, batches: Iterable[GraphBatch], device: torch.device) -> dict[str, float]:
    """Mean squared error and spectral MAE (mean |error| over every bin of every material) of ``model`` on
    labelled ``batches``, in float32 (validation is always fp32, whatever precision trains). A stability head's
    output column (:func:`pipeline.nn.model.split_outputs`) is not scored here."""
    se = ae = 0.0
    n_values = 0
    for batch, pred in iter_predictions(model, batches, device, "fp32"):
        diff = pred[:, : batch.targets.shape[1]] - batch.targets.float()  # the spectrum, not a stability head
        se += float((diff**2).sum())
        ae += float(diff.abs().sum())
        n_values += diff.numel()
    n_values = max(n_values, 1)
    return {"mse": se / n_values, "mae": ae / n_values}


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch names it (cpu, cuda, cuda:1, ...)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def model_from_checkpoint(
    ckpt: dict[str, Any], device: torch.device | str = "cpu", accelerator: str | None = None
) -> ALIGNN | EnsembleALIGNN:
    """A ``model.pt`` dict -> model in eval mode: an ALIGNN for one trained model (a member's model.pt, or an
    ensemble file with one member), an :class:`EnsembleALIGNN` averaging the members otherwise. ``accelerator``:
    ``model.accelerator`` to run it with (None: the schema default)."""
    config = ModelConfig.from_dict(ckpt["model_config"], accelerator)
    states = [m["state_dict"] for m in ckpt["members"]] if "members" in ckpt else [ckpt["state_dict"]]
    models = []
    for state in states:
        model = ALIGNN(config).to(device)
        model.load_state_dict(state)
        models.append(model.eval())
    return models[0] if len(models) == 1 else EnsembleALIGNN(models).eval()


def load_model(
    path: str | Path, device: torch.device | str = "cpu", accelerator: str | None = None
) -> ALIGNN | EnsembleALIGNN:
    """``model.pt`` -> model in eval mode (see :func:`model_from_checkpoint`); read as data only
    (:func:`pipeline.nn.modelfile.read_checkpoint`)."""
    return model_from_checkpoint(read_checkpoint(path, map_location=device), device, accelerator)
