"""Helpers shared by the test modules (one place instead of tests importing each other): settings built the way
the stages build them, and the small crystals, graphs and models many tests use."""

from __future__ import annotations

from typing import Any

from pipeline.data.featurize import FeaturizeSettings


def featurize_settings(n_shards: int = 1, **values: Any) -> FeaturizeSettings:
    """The ``featurize`` section with ``values`` over the schema defaults (one shard unless given)."""
    return FeaturizeSettings.from_config({"n_shards": n_shards, **values})
