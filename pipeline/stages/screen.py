"""screen: predicted phonon DOS and thermal properties of any crystal structures, with uncertainties and flags.

    python -m pipeline screen PATH [PATH ...] --out DIR [--model MODEL.pt] \\
        [--set properties.temperatures=100,300] [--set screen.max_atoms=500] [--set screen.top_n=10]

PATH: structure files or folders (CIF, POSCAR/CONTCAR/*.vasp, extended XYZ, pymatgen Structure JSON, JARVIS JSON,
or a MATERIALS parquet such as ``results/dos/pool.parquet``; :mod:`pipeline.data.readers`). ``--model`` defaults to
screen.model, and when that is null to the pretrained ensemble shipped in the package
(:func:`pipeline.nn.pretrained.default_model_path`); any ``model.pt`` of the train or ensemble stage works. Writes
into DIR:

- ``screen.parquet``: one row per structure (schema ``pipeline.schemas.SCREEN``, units in the column names);
- ``rejects.parquet``: every structure or file refused, ``(jid = material id or file, stage 'screen', reason)``:
  unreadable file (the parser's message), partial occupancies or disorder, non-periodic input, an element without
  atom features, overlapping atoms (``featurize.min_distance``), more than ``screen.max_atoms`` atoms, a degenerate
  cell, an atom without neighbours, a non-finite prediction;
- ``units.parquet``: column, unit and meaning of every ``screen.parquet`` column (``pd.read_parquet`` drops the
  field metadata that carries them);
- ``summary.parquet``, ``summary.md``, ``summary.html`` and the figures of :mod:`pipeline.screening.summary` (paper
  Fig. 11, Table S2; the ``screen.top_n`` highest and lowest materials per property).

Input is streamed ``--chunk`` structures at a time (read, graphs, model, properties, append to the parquet), so
memory stays flat in the number of structures; a progress bar is shown on a terminal. An input with no structure
at all exits 1 with a message; so does a model file that cannot be used.

What a row holds. The graphs are built with the model's own k and cutoff (its recorded provenance). Every member
of the ensemble predicts a max-normalised 66-bin DOS (``screen.batch_size`` graphs at a time); ``dos_pred`` is their
mean (what ``predict`` writes) and ``dos_std`` the per-bin standard deviation. Properties
(:mod:`pipeline.physics.thermo`, :mod:`pipeline.physics.isotopes`; at ``properties.temperatures``, stability by
``properties.unstable_fraction``; for a model with a stability head, by its value and
``properties.head_unstable_fraction``) are those of the mean spectrum; each ``*_std`` column is the standard deviation
(ddof 1) of the same property over the members' spectra (NaN with a one-model file). The absolute DOS is the mean
rescaled to 3N states per formula unit (:func:`pipeline.screening.screen.phonon_dos` returns it as a pymatgen
``PhononDos``).

Flags:

- ``beyond_grid``: the spectrum likely extends above the grid's 1000 cm^-1, so C_V and S_vib from it are biased
  (modes above the grid are missing, and the 3N rescaling piles their weight onto lower frequencies). Set when
  any of: (a) the predicted weight in the top 4 bins (>= 940 cm^-1) is at least ``screen.beyond_grid_weight``
  (default 0.005 of the non-negative DOS); (b) the structure contains hydrogen: X-H stretching and bending modes
  lie at 1000-4000 cm^-1, and the JARVIS labels, cut at 1000 cm^-1, do not show them, so a model trained on them
  cannot know; (c) a stiff short bond: shorter than 1.6 A between two atoms of Z <= 17, one of them B, C, N, O
  or F (C-C, B-N, C-N, B-O, N-O, ...; diamond's modes reach 1332 cm^-1), or shorter than 1.7 A to O or F
  (terminal M=O of vanadates, molybdates, niobates; Si-O, P-O, S-O). The thresholds were chosen on the
  train+val materials of ../shared/data and measured on its test split (README: recall on DFT spectra with
  >= 1 % of their weight at >= 940 cm^-1).
- ``unseen_elements``: elements that no training material contained (the model file's record or its sidecar,
  :func:`pipeline.nn.pretrained.training_elements`, or ``--train-dataset``); null when the model does not record
  its training elements.
- ``ood_score``: the ensemble's disagreement, the mean over bins of ``dos_std`` (max-normalised DOS units, like
  the spectral MAE). Members trained on the same data agree where the data was and diverge away from it (query by
  committee): how well it ranks the true spectral MAE on the official test ids is measured in the README
  ("Measured results", benchmarks/beyond_grid.py). NaN for a
  one-model file.

Library: pipeline.screening.screen and pipeline.screening.summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

from pipeline.config import ConfigNode
from pipeline.data.featurize import FeaturizeSettings
from pipeline.physics.properties import PropertiesSettings
from pipeline.screening.screen import DEFAULT_CHUNK, ScreenError, ScreenSettings, run
from pipeline.stages import common


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the screen stage reads: the ``screen`` section, ``properties.temperatures`` and
    ``properties.unstable_fraction`` (the properties computed) and ``featurize.min_distance`` (overlapping atoms).
    The workflow hands over only these keys (rules/screen.smk), so a change of another key reruns no screening."""

    screen: ScreenSettings
    properties: PropertiesSettings
    featurize: FeaturizeSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("screen", __doc__)
    p.add_argument("paths", nargs="*", metavar="PATH", help="structure files or folders")
    p.add_argument(
        "--out", required=True, help="output folder (screen.parquet, rejects.parquet, summary ...)"
    )
    p.add_argument(
        "--model",
        default=None,
        help="model.pt of the train or ensemble stage (default: screen.model; null there = the model shipped in "
        "the package, pipeline/nn/models/dos-cpu_small-x5.pt)",
    )
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="structures read and predicted at a time")
    common.add_threads(p)
    p.add_argument("--title", default=None, help="title of the summary (default: names the inputs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none off a terminal anyway)")
    p.add_argument("--no-summary", action="store_true", help="skip summary.parquet, tables and figures")
    p.add_argument(
        "--train-dataset",
        default=None,
        help="MATERIALS table the model was trained on (its train split gives the training elements) when the "
        "model file does not record them",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="an input without any usable structure writes empty tables and exits 0 (the workflow's pool step)",
    )
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    from pipeline.data.provenance import ProvenanceError
    from pipeline.nn.modelfile import ModelFileError
    from pipeline.runtime import tune_malloc_for_torch

    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    if a.chunk < 1:
        p.error(f"argument --chunk: {a.chunk} is less than the minimum of 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tune_malloc_for_torch()
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    try:
        r = run(
            a.paths,
            a.out,
            settings.screen,
            settings.properties.temperatures,
            settings.properties.unstable_fraction,
            settings.featurize.min_distance,
            a.model,
            chunk=a.chunk,
            progress=not a.no_progress,
            summary=not a.no_summary,
            title=a.title,
            allow_empty=a.allow_empty,
            train_dataset=a.train_dataset,
            head_unstable_fraction=settings.properties.head_unstable_fraction,
        )
    except (ScreenError, ModelFileError, ProvenanceError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"screen: {r.n_screened} structures -> {r.files['screen']}, {r.n_rejected} rejected -> "
        f"{r.files['rejects']} ({r.seconds:.1f} s)",
        file=sys.stderr,
    )
    return 0
