"""``python -m pipeline STAGE ...`` (or ``phonon-pipeline STAGE ...``): run one stage without Snakemake.

Each stage lives in its own module ``pipeline.<module>`` exposing ``main(argv) -> int``; ``STAGE --help`` lists
its arguments. Snakemake rules call exactly these commands.
"""

from __future__ import annotations

import importlib
import sys

#: stage name -> (module, one-line description)
STAGES: dict[str, tuple[str, str]] = {
    "fetch": ("pipeline.fetch", "download/read JARVIS structures and phonon DOS into results/fetch/"),
    "dos": ("pipeline.dos", "re-bin DOS to the 66-point grid, join with structures, split -> results/dos/"),
    "featurize": ("pipeline.featurize", "crystal graph + line graph of one shard -> results/graphs/"),
    "train": (
        "pipeline.train",
        "train one ALIGNN DOS model (an ensemble member) -> results/train/member-{i}/",
    ),
    "ensemble": (
        "pipeline.ensemble",
        "combine the trained members -> results/train/model.pt, history.parquet",
    ),
    "predict": ("pipeline.predict", "predict DOS for one shard / gather shards -> results/predict/"),
    "properties": (
        "pipeline.properties",
        "C_V, S_vib, F_vib, ZPE, isotope scattering, stability -> results/properties/",
    ),
    "baselines": (
        "pipeline.baselines",
        "direct scalar ALIGNN models for C_V(300 K) and S_vib(300 K) (paper's baseline)",
    ),
    "evaluate": ("pipeline.evaluate", "metrics, baselines and leakage analysis -> results/reports/"),
    "report": ("pipeline.report", "figures for the Snakemake report -> results/reports/figures/"),
    "crossval": (
        "pipeline.crossval",
        "predicted and JARVIS DFT vs Materials Project DFPT phonons (paper Fig. 10) -> results/crossval/",
    ),
    "screen": (
        "pipeline.screen",
        "predicted DOS, properties, uncertainties and flags of any structure files -> DIR/screen.parquet",
    ),
}


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
    module = importlib.import_module(STAGES[stage][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
