# Shared by all rule files: config validation (with defaults) and the result paths that are the stage contracts.
import json

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
PY = "python -m pipeline"

# Each rules/*.smk appends the files its stage contributes to the default target.
FINAL_TARGETS = []


def as_json(section):
    """A config section as one shell-quoted JSON argument (params changes trigger reruns)."""
    return "'" + json.dumps(section, sort_keys=True) + "'"
