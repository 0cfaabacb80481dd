"""Helpers shared by the test modules (one place instead of tests importing each other): settings built the way
the stages build them, and the small crystals, graphs and models many tests use."""

from __future__ import annotations

from typing import Any

from pipeline.data.featurize import FeaturizeSettings


def featurize_settings(n_shards: int = 1, **values: Any) -> FeaturizeSettings:
    """The ``featurize`` section with ``values`` over the schema defaults (one shard unless given)."""
    return FeaturizeSettings.from_config({"n_shards": n_shards, **values})


def figshare_settings(**values: Any):
    """The ``figshare`` section with ``values`` over the schema defaults (pipeline.data.fetch)."""
    from pipeline.data.fetch import FigshareSettings

    return FigshareSettings.from_config(values)


def split_settings(**values: Any):
    """The ``split`` section with ``values`` over the schema defaults (pipeline.data.dos)."""
    from pipeline.data.dos import SplitSettings

    return SplitSettings.from_config(values)


def report_settings(**values: Any):
    """The ``report`` section with ``values`` over the schema defaults (pipeline.reports.figures)."""
    from pipeline.reports.figures import ReportSettings

    return ReportSettings.from_config(values)


def train_settings(preset: str = "demo", **values: Any):
    """The ``train`` section with ``values`` over what ``preset`` (model.preset) and the schema supply
    (pipeline.nn.train.TrainConfig)."""
    from pipeline.nn.train import TrainConfig

    return TrainConfig.from_config(values, preset=preset)
