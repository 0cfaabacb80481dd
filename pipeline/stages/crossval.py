"""crossval stage: the model's predictions, and JARVIS DFT, against Materials Project DFPT phonons (paper Fig. 10).

    python -m pipeline crossval --mp PATH --out DIR [--model MODEL] \\
        [--dataset results/dos/dataset.parquet] [--pool results/dos/pool.parquet]
    python -m pipeline crossval --mp-api [--set crossval.mp_ids=mp-149,mp-66] [--set crossval.endpoint=URL] \\
        [--cache-dir data/raw] --out DIR ...

Sources: ``--mp`` a file or folder of MP phonon documents (``material_id``, pymatgen ``Structure``, pymatgen
``PhononDos``/``CompletePhononDos`` in THz; :mod:`pipeline.data.mp`), or ``--mp-api`` the official client (API key
from ``$MP_API_KEY`` only; ids from ``crossval.mp_ids``, else the MP ids recorded in the JARVIS records; REST at
``crossval.endpoint``), cached and checksummed under ``--cache-dir``. (In the workflow, crossval.source and
crossval.path choose between the two, and crossval.model the model file.)

What happens to every MP document:

1. parsed (:func:`pipeline.data.mp.parse_document`), its structure checked and described by the dos stage's
   ``structure_metadata``, its DOS converted THz -> cm^-1 and re-binned onto the 66-point grid with the dos stage's
   ``rebin`` (area-conserving; the fraction of the area outside -310..1010 cm^-1 is kept as ``area_off_grid_mp``),
   checked with ``dos_problem`` and max-normalised: the same steps as a JARVIS spectrum;
2. properties at 300 K from the same code as the properties stage (``compute_properties``): C_V, S_vib, the
   isotope scattering rate tau^-1 and the stability flag (``properties.unstable_fraction``);
3. with ``--model``: the MP structure featurised (``build_graphs`` with featurize.k, featurize.cutoff and
   featurize.min_distance) and predicted (``pipeline.nn.inference.load_model``, predict.batch_size graphs at a time;
   ensembles average their members), and the predicted DOS's properties;
4. matched to a JARVIS record of ``--dataset``/``--pool``: by the MP id the JARVIS record carries (figshare
   ``dft_3d`` ``reference``), else by reduced composition + pymatgen ``StructureMatcher`` (primitive cells,
   volumes scaled: OptB88vdW and PBEsol cells differ by a few %). A match with a JARVIS DFT DOS adds the DFT-DFT
   comparison (JARVIS OptB88vdW finite differences vs MP PBEsol DFPT) and whether the JARVIS id is in the model's
   training split (the leakage column; ``--dataset`` must be the table the model was trained from).

Outputs (schemas in pipeline.schemas): ``DIR/mp.parquet`` (CROSSVAL_MP, one row per usable document),
``DIR/summary.parquet`` (CROSSVAL_SUMMARY: R^2, MAE, MAD, MAE:MAD and n per comparison, subset and property),
``DIR/rejects.parquet`` (documents not used, and parts not computed, with the reason) and
``DIR/figures/{parity,spectra}.png``. Metrics follow the evaluate stage: properties of materials stable in both
spectra, tau^-1 only with isotope variance; MAD is that of the MP values.

Library: pipeline.reports.crossval (MP documents and the client: pipeline.data.mp).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigNode
from pipeline.data.featurize import FeaturizeSettings
from pipeline.data.mp import MPDocumentError, MPFetchError
from pipeline.nn.predict import PredictSettings
from pipeline.physics.properties import PropertiesSettings
from pipeline.reports.crossval import CrossvalSettings, run
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the crossval stage reads: the ``crossval`` section (``mp_ids``, ``endpoint``), the featurize settings of
    the graphs (``k``, ``cutoff``, ``min_distance``), ``properties.unstable_fraction`` and ``predict.batch_size``.
    The workflow hands over only these keys (rules/crossval.smk), so a change of another key reruns nothing here."""

    crossval: CrossvalSettings
    featurize: FeaturizeSettings
    properties: PropertiesSettings
    predict: PredictSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("crossval", __doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--mp", nargs="+", metavar="PATH", help="MP phonon documents: .json/.json.gz files or folders of them"
    )
    src.add_argument(
        "--mp-api",
        action="store_true",
        help="fetch the documents with the mp-api client (API key from $MP_API_KEY only)",
    )
    p.add_argument(
        "--out", required=True, help="output folder: mp.parquet, summary.parquet, rejects.parquet, figures/"
    )
    p.add_argument(
        "--model", default=None, help="model.pt (train/ensemble stage); without it, no predictions"
    )
    p.add_argument(
        "--dataset", default=None, help="results/dos/dataset.parquet: JARVIS records with DOS and split"
    )
    p.add_argument(
        "--pool", default=None, help="results/dos/pool.parquet: more JARVIS records to match against"
    )
    p.add_argument(
        "--cache-dir", default="data/raw", help="download cache (mp_phonon/*.json.gz + checksums.json)"
    )
    common.add_device(p)
    common.add_threads(p)
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    for path in a.mp or []:
        if not Path(path).exists():
            p.error(f"argument --mp: {path} does not exist")
    for opt, path in (("--model", a.model), ("--dataset", a.dataset), ("--pool", a.pool)):
        if path and not Path(path).exists():
            p.error(f"argument {opt}: {path} does not exist")
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    try:
        run(
            None if a.mp_api else a.mp,
            a.out,
            settings.crossval,
            settings.featurize,
            settings.properties.unstable_fraction,
            settings.predict.batch_size,
            model=a.model,
            dataset=a.dataset,
            pool=a.pool,
            cache_dir=a.cache_dir,
            device=a.device,
        )
    except (MPDocumentError, MPFetchError) as exc:
        print(f"crossval: error: {exc}", file=sys.stderr)
        return 1
    return 0
