# Shared by all rule files: config validation (with defaults) and the result paths that are the stage contracts.
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from pipeline.config import ConfigError, validate_config

min_version("8.20")

# pipeline/config.schema.yaml plus the rules it cannot express (pipeline.config.RULES), the same checks as the
# stage CLIs; `--config 'split={seed: 7}'` arrives as strings, which are coerced to the schema's types first.
try:
    config.update(validate_config(config))
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = config["results_dir"]
DATA = config["data_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
PY = "python -m pipeline"  # pass as a param (py=PY) if used in shell: lint flags globals in shell

# Each rules/*.smk appends the files its stage contributes to the default target.
FINAL_TARGETS = []
