"""``python -m pipeline STAGE ...`` (or ``phonon-pipeline STAGE ...``): run one stage without Snakemake.

Each stage lives in its own module ``pipeline.<module>`` exposing ``main(argv) -> int``; ``STAGE --help`` lists
its arguments. Snakemake rules call exactly these commands.

When stderr is not a terminal (a log file: every rule writes ``> {log} 2>&1``), each line a stage writes there
starts with its local time (``2026-01-31 12:00:00 ``), and progress bars stay off (they draw only on a terminal).
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any, TextIO

#: stage name -> (module, one-line description)
STAGES: dict[str, tuple[str, str]] = {
    "fetch": ("pipeline.stages.fetch", "download/read JARVIS structures and phonon DOS into results/fetch/"),
    "dos": (
        "pipeline.stages.dos",
        "re-bin DOS to the 66-point grid, join with structures, split -> results/dos/",
    ),
    "featurize": ("pipeline.stages.featurize", "crystal graph + line graph of one shard -> results/graphs/"),
    "train": (
        "pipeline.stages.train",
        "train one ALIGNN DOS model (an ensemble member) -> results/train/member-{i}/",
    ),
    "ensemble": (
        "pipeline.stages.ensemble",
        "combine the trained members -> results/train/model.pt, history.parquet",
    ),
    "predict": ("pipeline.stages.predict", "predict DOS for one shard / gather shards -> results/predict/"),
    "properties": (
        "pipeline.stages.properties",
        "C_V, S_vib, F_vib, ZPE, isotope scattering, stability -> results/properties/",
    ),
    "baselines": (
        "pipeline.stages.baselines",
        "direct scalar ALIGNN models for C_V(300 K) and S_vib(300 K) (paper's baseline)",
    ),
    "evaluate": ("pipeline.stages.evaluate", "metrics, baselines and leakage analysis -> results/reports/"),
    "report": ("pipeline.stages.report", "figures for the Snakemake report -> results/reports/figures/"),
    "crossval": (
        "pipeline.stages.crossval",
        "predicted and JARVIS DFT vs Materials Project DFPT phonons (paper Fig. 10) -> results/crossval/",
    ),
    "screen": (
        "pipeline.stages.screen",
        "predicted DOS, properties, uncertainties and flags of any structure files -> DIR/screen.parquet",
    ),
}


class TimestampedStream:
    """A text stream that starts every line written to it with the local time (for log files)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._line_start = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        stamp = time.strftime("%Y-%m-%d %H:%M:%S ")
        out = []
        for piece in text.splitlines(keepends=True):
            if self._line_start:
                out.append(stamp)
            out.append(piece)
            self._line_start = piece.endswith(("\n", "\r"))
        self._stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ... of the wrapped stream
        return getattr(self._stream, name)


def usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: python -m pipeline STAGE [--help | stage arguments]", "", "stages:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"unknown stage '{stage}'\n\n{usage()}", file=sys.stderr)
        return 2
    stderr = sys.stderr
    if not stderr.isatty() and not isinstance(stderr, TimestampedStream):
        sys.stderr = TimestampedStream(stderr)
    try:
        module = importlib.import_module(STAGES[stage][0])
        return int(module.main(rest) or 0)
    finally:
        sys.stderr = stderr


if __name__ == "__main__":
    raise SystemExit(main())
