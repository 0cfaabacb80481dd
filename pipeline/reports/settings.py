"""The ``evaluate`` section's dataclass, in a module of its own: the evaluate stage's library
(pipeline.reports.evaluate, which re-exports it) imports the baseline models and with them torch, and two stages read
evaluate keys without evaluating (dos: ``evaluate.duplicate_mae`` for the leakage-aware split; report: the split and
the threshold it shows), in an environment without torch (envs/pipeline.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.config import ConfigNode


@dataclass(frozen=True)
class EvaluateSettings(ConfigNode):
    """The ``evaluate`` config section (meaning, defaults and bounds: pipeline/config.schema.yaml).
    ``direct_baselines`` is the workflow's switch (whether the rule trains the direct models and passes their
    predictions); the stage uses the direct predictions it is given."""

    KEY: ClassVar[str] = "evaluate"
    split: str
    duplicate_mae: float
    debye_fractions: tuple[float, ...]
    direct_baselines: bool
