"""report stage: the figures, tables and landing text of the Snakemake report (``snakemake --report``).

    python -m pipeline report --dataset results/dos/dataset.parquet --history results/train/history.parquet \\
        --predictions results/predict/test.parquet --reports-dir results/reports --out-dir results/reports/figures \\
        --description results/reports/description.rst [--set report.seed=0] [--set evaluate.split=test]

Always (one caption each in report/*.rst):
  dataset.png           the training split as in paper Fig. 2: materials per element (periodic table), number of
                        elements, crystal system, volume per atom
  learning_curves.png   training loss and validation MAE per epoch of every member (--history)
With --predictions (the evaluate stage's outputs in --reports-dir):
  metrics.html          headline metrics (all / non-duplicate / near-duplicate), baselines, every metric
  parity.png            DFT vs predicted C_V(300 K), C_V(0.5 T_D), S_vib(300 K), tau_i^-1 (stable in both)
  mae_histogram.png     spectral MAE histogram (all / non-duplicate) with an example spectrum of each filled bin
  mae_descriptors.png   spectral MAE vs volume per atom, number of elements and crystal system
  confusion.png         dynamical-stability confusion matrix with accuracy / precision / recall
  cv_mae_vs_debye.png   C_V MAE vs T / T_D (all and non-duplicate test materials)
  leakage.png           nearest train+val spectrum MAE of every test spectrum, duplicate threshold marked
  baselines.png         MAE:MAD of the DOS-mediated model and the baselines at 300 K
With --description: the report's landing text (what ran, data, model and its card, headline metrics), which the
workflow names in its ``report:`` directive (rules/report.smk); --run holds the facts of the run it names (the
workflow builds them from its config). Library: pipeline.reports.figures.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from pipeline.config import ConfigNode
from pipeline.reports.figures import ReportSettings, write_report
from pipeline.reports.settings import EvaluateSettings
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the report stage reads: the ``report`` section, and ``evaluate.split`` and ``evaluate.duplicate_mae``
    (the split the evaluate stage's metrics are of, the near-duplicate threshold the leakage figure marks). The
    workflow hands over only these two evaluate keys (rules/report.smk)."""

    report: ReportSettings
    evaluate: EvaluateSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("report", __doc__)
    p.add_argument(
        "--dataset",
        required=True,
        help="results/dos/dataset.parquet: the data-set figure, DFT spectra of examples",
    )
    p.add_argument("--pool", help="results/dos/pool.parquet: its size goes into the description")
    p.add_argument("--history", help="results/train/history.parquet: learning curves")
    p.add_argument(
        "--predictions",
        help="results/predict/test.parquet: with it, the evaluation figures and metrics.html (from --reports-dir)",
    )
    p.add_argument("--reports-dir", default="results/reports", help="evaluate stage outputs")
    p.add_argument(
        "--out-dir", default="results/reports/figures", help="where the figures and metrics.html go"
    )
    p.add_argument("--description", help="write the Snakemake report's landing text (reStructuredText) here")
    p.add_argument(
        "--model", help="model.pt that made the predictions (for the description; its model card is quoted)"
    )
    p.add_argument(
        "--run",
        type=json.loads,
        default={},
        help="JSON object with the run's settings for the description (source, split_method, preset, ...)",
    )
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    write_report(
        a.dataset,
        a.out_dir,
        settings.report,
        duplicate_mae=settings.evaluate.duplicate_mae,
        evaluate_split=settings.evaluate.split,
        reports_dir=a.reports_dir,
        predictions=a.predictions,
        pool=a.pool,
        history=a.history,
        description=a.description,
        model=a.model,
        facts=a.run,
    )
    return 0
