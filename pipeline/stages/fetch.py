"""fetch stage: JARVIS-DFT structures and phonon DOS -> results/fetch/{structures,dos_raw,rejects}.parquet.

  python -m pipeline fetch [--out-dir results/fetch] [--cache-dir data/raw] \\
      [--set source=local] [--set local_path=data/demo/structures.json] [--set dos_source=leaderboard] \\
      [--set figshare.mirror=DIR_OR_URL] [--set figshare.retries=3] [--set figshare.timeout_s=60]

Sources
- structures (source): ``figshare`` (the ``dft_3d`` record of jarvis-tools' figshare table, downloaded, cached and
  checksummed in --cache-dir) or ``local`` (local_path: a JARVIS-format JSON / JSON zip, or a directory of them).
- DOS (dos_source): ``leaderboard`` (the paper's 14,243 spectra and official split shipped in the
  ``jarvis-leaderboard`` package) or ``figshare`` (``edos_pdos`` records, ``pdos_elast`` sampled every 5 cm^-1
  from 0 to 995 cm^-1).

Exit status 1, with the reason and no traceback, when a source cannot be read (offline, corrupt download, a single
local file that is not a JARVIS file). Library: pipeline.data.fetch.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass

from pipeline.config import ConfigNode
from pipeline.data.fetch import FetchError, FigshareSettings, run
from pipeline.stages import common

log = logging.getLogger("pipeline.stages.fetch")


@dataclass(frozen=True)
class Settings(ConfigNode):
    """What the fetch stage reads: the top-level keys source, local_path, dos_source and the ``figshare`` section."""

    source: str
    local_path: str
    dos_source: str
    figshare: FigshareSettings


def build_parser() -> argparse.ArgumentParser:
    p = common.parser("fetch", __doc__)
    p.add_argument(
        "--out-dir", default="results/fetch", help="writes structures/dos_raw/rejects.parquet here"
    )
    p.add_argument("--cache-dir", default="data/raw", help="download cache (zips + checksums.json)")
    common.add_settings_options(p, Settings)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a, settings = common.parse(p, argv, Settings)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        counts = run(
            settings.source,
            settings.dos_source,
            settings.local_path,
            settings.figshare,
            a.out_dir,
            a.cache_dir,
        )
    except FetchError as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(counts))  # the summary, once (machine-readable, on stdout)
    return 0
