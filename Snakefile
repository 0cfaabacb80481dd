# High-throughput phonon pipeline. Stages live in rules/*.smk; all logic lives in the `pipeline` package.
#   snakemake --cores all                                   # figshare source (needs internet)
#   snakemake --cores all --configfile config/demo.yaml     # embedded demo, minutes on a laptop
#   snakemake --cores all --profile profiles/slurm          # on a SLURM cluster


configfile: "config.yaml"


include: "rules/common.smk"


rule all:
    input:
        lambda wildcards: FINAL_TARGETS,
    default_target: True


include: "rules/fetch.smk"
include: "rules/dos.smk"
include: "rules/featurize.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/properties.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
