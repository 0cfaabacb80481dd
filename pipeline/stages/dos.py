"""dos stage: re-bin spectra to the 66-point grid, join with structures, add metadata, split.

  python -m pipeline dos [--fetch-dir results/fetch] [--out-dir results/dos] \\
      [--set split.method=random] [--set split.fractions=0.8,0.1,0.1] [--set split.seed=42] \\
      [--set featurize.min_distance=0.5] [--set evaluate.duplicate_mae=0.01]

Inputs: results/fetch/structures.parquet and dos_raw.parquet. Outputs (schema ``pipeline.schemas.MATERIALS``):
- dataset.parquet: labelled materials (split train/val/test),
- pool.parquet: structures without a DOS (split 'pool', dos null), the inference pool,
- rejects.parquet: every structure or spectrum that was not used, with the reason.

Library: pipeline.data.dos.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass

from pipeline.config import ConfigNode
from pipeline.data.dos import SplitSettings, run
from pipeline.data.graphs import FeaturizeSettings
from pipeline.reports.settings import EvaluateSettings
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the dos stage reads: the ``split`` section, ``featurize.min_distance`` (structures with overlapping atoms
    are rejected, as featurize rejects them) and, for ``split.method: leakage_aware``, ``evaluate.duplicate_mae`` (the
    near-duplicates kept in one fold). The workflow hands over only these keys (rules/dos.smk; the duplicate
    threshold only with that method), so a change of another key reruns no dos job."""

    split: SplitSettings
    featurize: FeaturizeSettings
    evaluate: EvaluateSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("dos", __doc__)
    p.add_argument(
        "--fetch-dir", default="results/fetch", help="directory with structures.parquet, dos_raw.parquet"
    )
    p.add_argument(
        "--out-dir", default="results/dos", help="writes dataset.parquet, pool.parquet, rejects.parquet here"
    )
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    counts = run(
        a.fetch_dir,
        a.out_dir,
        settings.split,
        settings.featurize.min_distance,
        settings.evaluate.duplicate_mae,
    )
    print(json.dumps(counts))  # the summary, once
    return 0
