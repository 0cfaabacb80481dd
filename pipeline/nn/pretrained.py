"""The pretrained model shipped inside the package, and what ``screen`` needs to know about any model file.

- :func:`default_model_path`: ``pipeline/nn/models/dos-cpu_small-x5.pt``, the accuracy configuration
  (``config/shared_accuracy.yaml``: 5 ``cpu_small`` seed members) trained by the pipeline on the real JARVIS
  structures of ../shared/data, with its model card beside it (``dos-cpu_small-x5.md``). ``screen --model``
  defaults to it; any ``model.pt`` of the train or ensemble stage works as well.
- The file may hold float16 weights (to stay small); :func:`load_for_screening` casts them back to float32.
- :func:`training_elements`: the elements of the model's training set and how many training materials contain
  each, from the model file's ``train_elements`` entry or from the sidecar ``<model>.train.json``
  (:func:`write_sidecar`; ``python -m pipeline.stages.pretrained elements --dataset results/dos/dataset.parquet
  --model MODEL.pt``). ``screen`` flags elements a model never saw; without the record it says it cannot.
- :func:`half_precision_copy`: a copy of a model file with float16 weights (half size;
  ``python -m pipeline.stages.pretrained half IN.pt OUT.pt``).

The commands that maintain the shipped model (``elements``, ``half``, ``pack`` and ``card`` of
:mod:`pipeline.nn.modelcard`, and ``expected``: the reference predictions ``tests/test_screen.py`` checks, made by
screening) live in ``pipeline.stages.pretrained``, above both this package and ``pipeline.screening``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

#: file name of the shipped model inside pipeline/nn/models/
DEFAULT_MODEL_NAME = "dos-cpu_small-x5.pt"
TRAIN_SIDECAR_SUFFIX = ".train.json"


def default_model_path() -> Path:
    """Where the shipped model lives (it may be absent in a checkout that has not received it yet)."""
    return Path(str(resources.files("pipeline.nn").joinpath("models", DEFAULT_MODEL_NAME)))


def model_card_path(model_path: str | Path | None = None) -> Path:
    p = Path(model_path) if model_path is not None else default_model_path()
    return p.with_suffix(".md")


def sidecar_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name.removesuffix(".pt") + TRAIN_SIDECAR_SUFFIX)


@dataclass
class ScreeningModel:
    """A loaded model file: its members (one ALIGNN each), id, input settings and training elements."""

    members: list[Any]  # pipeline.nn.model.ALIGNN, eval mode, float32
    model_id: str
    path: Path
    k: int | None
    cutoff: float | None
    provenance: Any  # pipeline.data.provenance.InputProvenance
    train_elements: dict[str, int] | None  # element -> training materials containing it; None = unknown


def _as_float32(ckpt: dict[str, Any]) -> dict[str, Any]:
    """Every floating tensor of the state dict(s) in float32 (a shipped file may store float16)."""
    import torch

    def cast(state: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in state.items()
        }

    ckpt = dict(ckpt)
    if "members" in ckpt:
        ckpt["members"] = [dict(m, state_dict=cast(m["state_dict"])) for m in ckpt["members"]]
    elif "state_dict" in ckpt:
        ckpt["state_dict"] = cast(ckpt["state_dict"])
    return ckpt


def load_for_screening(path: str | Path, device: str = "cpu") -> ScreeningModel:
    """Read ``path`` as data only (:func:`pipeline.nn.modelfile.read_checkpoint`, the loader behind
    :func:`pipeline.nn.inference.load_model`) and build its members in float32.

    Raises :class:`pipeline.nn.modelfile.ModelFileError` or ``FileNotFoundError``."""
    from pipeline.data.provenance import InputProvenance
    from pipeline.nn.inference import model_from_checkpoint
    from pipeline.nn.model import EnsembleALIGNN
    from pipeline.nn.modelfile import CorruptModelFileError, read_checkpoint
    from pipeline.nn.predict import file_hash

    path = Path(path)
    ckpt = read_checkpoint(path, map_location=device)
    if "model_config" not in ckpt or not ("members" in ckpt or "state_dict" in ckpt):
        raise CorruptModelFileError(f"{path} is not a model file of the train or ensemble stage")
    model = model_from_checkpoint(_as_float32(ckpt), device)
    members = list(model.members) if isinstance(model, EnsembleALIGNN) else [model]
    prov = InputProvenance.from_mapping(ckpt.get("provenance"))
    return ScreeningModel(
        members=[m.float().eval() for m in members],
        model_id=file_hash(path),
        path=path,
        k=prov.k,
        cutoff=prov.cutoff,
        provenance=prov,
        train_elements=training_elements(path, ckpt),
    )


def training_elements(model_path: str | Path, ckpt: dict[str, Any] | None = None) -> dict[str, int] | None:
    """Element -> number of training materials containing it, from the model file or its sidecar; else None."""
    if ckpt is not None and isinstance(ckpt.get("train_elements"), dict):
        return {str(k): int(v) for k, v in ckpt["train_elements"].items()}
    side = sidecar_path(model_path)
    if side.exists():
        data = json.loads(side.read_text())
        return {str(k): int(v) for k, v in data["elements"].items()}
    return None


def count_elements(dataset: str | Path, splits: tuple[str, ...] = ("train",)) -> tuple[dict[str, int], int]:
    """(element -> materials of ``splits`` containing it, number of those materials) of a MATERIALS table."""
    import pyarrow.parquet as pq

    table = pq.read_table(dataset, columns=["split", "elements"]).to_pandas()
    rows = table[table["split"].isin(splits)]
    counts: Counter[str] = Counter()
    for els in rows["elements"]:
        counts.update(set(map(str, els)))
    return dict(sorted(counts.items())), len(rows)


def write_sidecar(model_path: str | Path, dataset: str | Path, splits: tuple[str, ...] = ("train",)) -> Path:
    counts, n = count_elements(dataset, splits)
    out = sidecar_path(model_path)
    out.write_text(
        json.dumps(
            {"dataset": str(dataset), "splits": list(splits), "n_materials": n, "elements": counts}, indent=1
        )
        + "\n"
    )
    return out


def with_half_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A model-file dict whose state dict(s) store every floating tensor as float16."""
    import torch

    def half(state: dict[str, Any]) -> dict[str, Any]:
        return {
            k: v.half() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in state.items()
        }

    ckpt = dict(ckpt)
    if "members" in ckpt:
        ckpt["members"] = [dict(m, state_dict=half(m["state_dict"])) for m in ckpt["members"]]
    else:
        ckpt["state_dict"] = half(ckpt["state_dict"])
    return ckpt


def half_precision_copy(src: str | Path, dst: str | Path) -> Path:
    """Write ``dst``: ``src`` with every floating tensor of its state dict(s) stored as float16."""
    import torch

    from pipeline.io import atomic_path
    from pipeline.nn.modelfile import read_checkpoint

    ckpt = with_half_weights(read_checkpoint(src))
    with atomic_path(dst) as tmp:
        torch.save(ckpt, tmp)
    return Path(dst)
