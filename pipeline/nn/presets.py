"""Named model + training presets, selected by ``model.preset`` in the config.

``paper`` is the setting of Gurunathan et al. (2023), Sec. II A. The CPU presets trade depth/width and epochs for
wall time on a laptop-class CPU; ``demo`` is tiny so that the embedded demo trains in about a minute on 2 cores.
Any key of :class:`pipeline.nn.model.ModelConfig` can be overridden in the ``model`` config section and any key of
:class:`pipeline.nn.train.TrainConfig` in the ``train`` section; the preset only supplies the values of the keys that
have no schema default (:func:`model_values`, :func:`train_values`; a stage's settings: :class:`FilledFromPreset`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
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
    # cpu_small: the accuracy preset of config/shared_accuracy.yaml (about 1,000 training graphs within the hour on a
    # 2-core CPU). Small batches and a real weight decay, chosen on the validation split: with ~1k spectra the model
    # overfits otherwise (the scores of the settings tried: README, "Measured results").
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
    return _filled(model_section, (model_section or {}).get("preset"), "model")


def train_values(train_section: Mapping[str, Any] | None, preset: str | None) -> dict[str, Any]:
    """The ``train`` section with the values preset ``preset`` (None: the schema's default ``model.preset``)
    supplies filled in where not given (unknown presets are left for the ``model.preset`` check to name)."""
    return _filled(train_section, preset, "train")


def _filled(values: Mapping[str, Any] | None, preset: str | None, section: str) -> dict[str, Any]:
    """``values`` with what preset ``preset`` (None: the schema's default) supplies for ``section`` where not given."""
    return {**PRESETS.get(preset or _schema_default_preset(), {}).get(section, {}), **(values or {})}


def preset_values(values: Mapping[str, Any] | None, sections: Collection[str]) -> dict[str, Any]:
    """A stage's settings (top-level keys) with the preset-supplied keys filled in its ``model`` and/or ``train``
    sections (those of ``sections`` it reads; the preset is the given ``model.preset`` or the schema's default)."""
    out = dict(values or {})
    model, train = out.get("model"), out.get("train")
    preset = model.get("preset") if isinstance(model, Mapping) else None
    if "model" in sections and (model is None or isinstance(model, Mapping)):  # else: for the schema check
        out["model"] = model_values(model)
    if "train" in sections and (train is None or isinstance(train, Mapping)):
        out["train"] = train_values(train, preset)
    return out


class FilledFromPreset:
    """Mixin of a stage's root settings (a :class:`pipeline.config.ConfigNode` with ``KEY = ""``) that hold the
    ``model`` and/or ``train`` section: ``from_config`` fills the keys ``model.preset`` supplies first
    (:func:`preset_values`), so every field is set. List it before ConfigNode: ``class Settings(FilledFromPreset,
    ConfigNode)``."""

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None = None):  # noqa: ANN206 - the ConfigNode subclass
        return super().from_config(preset_values(values, cls.__dataclass_fields__))  # type: ignore[misc]


def _schema_default_preset() -> str:
    from pipeline.config import schema_node

    return schema_node("model.preset")["default"]
