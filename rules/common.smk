# Shared by all rule files: config validation (with defaults) and the result paths that are the stage contracts.
import os

from snakemake.utils import min_version, validate

from pipeline.config import coerce_cli_strings, schema

min_version("8.20")

# `--config 'split={seed: 7}'` arrives as strings: coerce to the schema's types before validating.
config.update(coerce_cli_strings(dict(config), schema()))
validate(config, workflow.source_path("../pipeline/config.schema.yaml"))

RESULTS = config["results_dir"]
DATA = config["data_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
PY = "python -m pipeline"  # pass as a param (py=PY) if used in shell: lint flags globals in shell

# Each rules/*.smk appends the files its stage contributes to the default target.
FINAL_TARGETS = []
