"""properties stage: spectra -> C_V, S_vib, F_vib, ZPE, stability, Debye temperature, isotope scattering.

    python -m pipeline properties --dataset results/dos/dataset.parquet \\
        [--pool results/dos/pool.parquet] [--predictions results/predict/test.parquet ...] \\
        --out results/properties/properties.parquet --rejects results/properties/rejects.parquet \\
        [--set properties.temperatures=100,300] [--set properties.unstable_fraction=0.1]

Harmonic C_V, S_vib, F_vib, ZPE (per mole of formula units and per kg), dynamical stability, Debye temperature and
phonon-isotope scattering rate from DFT and predicted spectra. One output row per (material, source): 'dft' for
every labelled material of the dataset, 'pred' for every predicted spectrum given (material metadata looked up in
--dataset/--pool). Without --predictions only DFT rows are written (properties.use_predictions is the workflow's
switch: which prediction files the rule passes). Conventions (3N rescaling, integration) are documented in
pipeline/physics/thermo.py; the schema is pipeline.schemas.PROPERTIES. Library: pipeline.physics.properties.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigNode
from pipeline.physics.properties import PropertiesSettings, run
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the properties stage reads: the ``properties`` section."""

    properties: PropertiesSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("properties", __doc__)
    p.add_argument("--dataset", required=True, help="results/dos/dataset.parquet (MATERIALS schema)")
    p.add_argument(
        "--pool", default=None, help="results/dos/pool.parquet: metadata for predicted pool materials"
    )
    p.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        help="results/predict/{set}.parquet files (optional; each must exist)",
    )
    p.add_argument(
        "--out", default="results/properties/properties.parquet", help="properties table (PROPERTIES)"
    )
    p.add_argument(
        "--rejects", default="results/properties/rejects.parquet", help="spectra refused, with reasons"
    )
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    missing = [f for f in a.predictions if not Path(f).exists()]
    if missing:
        p.error(f"argument --predictions: files not found: {missing}")
    table = run(a.dataset, a.pool, a.predictions, a.out, a.rejects, settings.properties)
    print(f"properties: wrote {len(table)} rows to {a.out}", file=sys.stderr)
    return 0
