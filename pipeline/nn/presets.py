"""Named model + training presets, selected by ``model.preset`` in the config.

``paper`` is the setting of Gurunathan et al. (2023), Sec. II A. The CPU presets trade depth/width and epochs for
wall time on a laptop-class CPU; ``demo`` is tiny so that the embedded demo trains in about a minute on 2 cores.
Any key of :class:`pipeline.nn.model.ModelConfig` can be overridden in the ``model`` config section and any key of
:class:`pipeline.nn.train.TrainConfig` in the ``train`` section; the preset only supplies defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The paper: 6 ALIGNN + 6 edge-gated GCN layers, hidden 256, batch 64, AdamW lr 1e-3, MSE, 600 epochs.
    "paper": {
        "model": {"alignn_layers": 6, "gcn_layers": 6, "hidden_features": 256, "embedding_features": 64},
        "train": {"epochs": 600, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-5, "loss": "mse"},
    },
    # CPU presets: same architecture family, fewer/narrower layers. L1 loss because the reported metric is the
    # spectral MAE and many bins of a max-normalised DOS are exactly zero (the median spectrum beats the mean there).
    "cpu_medium": {
        "model": {"alignn_layers": 3, "gcn_layers": 3, "hidden_features": 128, "embedding_features": 64},
        "train": {"epochs": 60, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-5, "loss": "l1"},
    },
    # cpu_small: the accuracy preset of config/shared_accuracy.yaml (about 1,000 training graphs in < 60 min on a
    # shared 2-core CPU). Small batches and a real weight decay: with ~1k spectra the model overfits otherwise
    # (batch 32 / wd 1e-5 / 100 epochs: best val MAE 0.0860, test 0.0747; these settings: val 0.0822, test 0.0734;
    # 160 epochs gave no better val MAE, 0.0821 at epoch 63, test 0.0746).
    "cpu_small": {
        "model": {"alignn_layers": 2, "gcn_layers": 2, "hidden_features": 64, "embedding_features": 64},
        "train": {"epochs": 80, "batch_size": 16, "lr": 2e-3, "weight_decay": 0.05, "loss": "l1"},
    },
    # Embedded demo: trains in about a minute on 2 cores.
    "demo": {
        "model": {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 32, "embedding_features": 32},
        "train": {"epochs": 30, "batch_size": 16, "lr": 3e-3, "weight_decay": 1e-5, "loss": "mse"},
    },
}


def model_values(model_section: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model`` section with the values its preset supplies filled in where not given (the preset name
    itself stays; unknown presets are left for the schema check to name)."""
    values = dict(model_section or {})
    name = values.get("preset", _schema_default_preset())
    for key, value in PRESETS.get(name, {}).get("model", {}).items():
        values.setdefault(key, value)
    return values


def _schema_default_preset() -> str:
    from pipeline.config import schema_node

    return schema_node("model.preset")["default"]


def resolve(model_section: dict[str, Any] | None, train_section: dict[str, Any] | None) -> tuple[dict, dict]:
    """Config sections -> (model settings, train settings): the preset's values overridden by explicit keys.

    ``model.preset`` names the preset (default ``cpu_small``); every other key in either section wins over it.
    Raises :class:`pipeline.config.ConfigError` (a ``ValueError``) naming the key when the merged settings break
    the config schema (``train.epochs: 0``, unknown keys, ...).
    """
    model_section = dict(model_section or {})
    train_section = dict(train_section or {})
    name = model_section.pop("preset", "cpu_small")
    from pipeline.config import ConfigError, validate_section

    if name not in PRESETS:
        raise ConfigError("model.preset", f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    preset["model"].update(model_section)
    preset["train"].update(train_section)
    # the merged settings must satisfy the config schema too: a preset cannot sneak in what a config could not
    context = f" (preset {name!r} with the given overrides)"
    validate_section("model", {"preset": name, **preset["model"]}, context)
    validate_section("train", preset["train"], context)
    return preset["model"], preset["train"]
