"""evaluate stage: DFT vs predicted spectra on one split (the paper's Sec. III), with leakage analysis and baselines.

    python -m pipeline evaluate --dataset results/dos/dataset.parquet \\
        --predictions results/predict/test.parquet --properties results/properties/properties.parquet \\
        --out-dir results/reports [--direct results/baselines/direct_test.parquet] \\
        [--set evaluate.split=test] [--set evaluate.duplicate_mae=0.01] [--set evaluate.debye_fractions=0.5,1]

Writes (schemas in pipeline.schemas):
  spectral.parquet  SPECTRAL  per-material spectral MAE, nearest train+val spectrum, stability, descriptors
  thermal.parquet   THERMAL   per-material C_V / S_vib / tau^-1 (DFT, predicted, Debye and BvK baselines)
  metrics.parquet   METRICS   every metric on 'all', 'non_duplicate', 'near_duplicate' and per relaxation group
  rejects.parquet   REJECTS   split materials that could not be evaluated (no prediction, no properties)

Definitions: spectral MAE = mean over the 66 bins of |DFT - predicted| (max-normalised, paper eq. 5);
near-duplicate = a train+val DFT spectrum within per-bin MAE < evaluate.duplicate_mae; stability confusion matrix
with 'stable' as the positive class (precision = predicted-stable that are DFT-stable, as in the paper);
MAD = mean |y - mean(y)| of the DFT values; R^2 = coefficient of determination of predicted vs DFT.
Property metrics use materials stable in both DFT and prediction; tau^-1 additionally excludes materials without
isotope variance. C_V at fractions of T_D uses the DFT (or elastic) Debye temperature for both spectra.

evaluate.direct_baselines is the workflow's switch (whether it trains the direct models and passes --direct).
Library: pipeline.reports.evaluate.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from pipeline.config import ConfigNode
from pipeline.reports.evaluate import EvaluateSettings, run, summary
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the evaluate stage reads: the ``evaluate`` section."""

    evaluate: EvaluateSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("evaluate", __doc__)
    p.add_argument("--dataset", required=True, help="results/dos/dataset.parquet")
    p.add_argument("--predictions", required=True, help="results/predict/test.parquet (PREDICTIONS schema)")
    p.add_argument(
        "--properties", required=True, help="results/properties/properties.parquet (with 'pred' rows)"
    )
    p.add_argument(
        "--out-dir", default="results/reports", help="writes spectral, thermal, metrics, rejects.parquet"
    )
    p.add_argument(
        "--direct", default=None, help="optional parquet of direct scalar predictions (jid, *_direct)"
    )
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    res = run(a.dataset, a.predictions, a.properties, a.out_dir, settings.evaluate, a.direct)
    print(summary(res["metrics"]), file=sys.stderr)
    return 0
