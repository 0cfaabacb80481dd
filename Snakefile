# High-throughput phonon pipeline. Stages live in rules/*.smk; all logic lives in the `pipeline` package.
#   snakemake --cores all                                   # figshare source (needs internet)
#   snakemake --cores all --configfile config/demo.yaml     # embedded demo, minutes on a laptop
#   snakemake --cores all --profile profiles/slurm          # on a SLURM cluster


configfile: "config.yaml"


include: "rules/common.smk"


rule all:
    default_target: True
    input:
        lambda wildcards: FINAL_TARGETS,


include: "rules/fetch.smk"
include: "rules/dos.smk"
include: "rules/featurize.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/properties.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/crossval.smk"
include: "rules/screen.smk"
