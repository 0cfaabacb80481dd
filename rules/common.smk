# Shared by all rule files: config validation (with defaults) and the result paths that are the stage contracts.
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from pipeline.config import (
    ConfigError,
    put_first_on_pythonpath,
    settings_arg,
    validate_config,
)

min_version("8.20")

# pipeline/config.schema.yaml plus the rules it cannot express (pipeline.config.RULES), the same checks as the
# stage CLIs; `--config 'split={seed: 7}'` arrives as strings, which are coerced to the schema's types first.
try:
    config.update(validate_config(config))
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# The repository holding this file's rules/ (found from this file, not from the working directory or Snakemake's
# copy of an environment file): every job's `python -m pipeline` imports the package from here through PYTHONPATH,
# which the jobs inherit (cluster jobs too: they parse the workflow again). So a `--sdm conda` environment
# (envs/*.yaml) needs only the dependencies, and no install of the package.
REPO = os.path.dirname(workflow.current_basedir.get_path_or_uri(secret_free=True))
put_first_on_pythonpath(REPO)

RESULTS = config["results_dir"]
DATA = config["data_dir"]
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
PY = "python -m pipeline"

# Each rule hands its stage the validated settings it reads as one --settings parameter (params:
# settings=settings_arg(config, "featurize")), parsed there into the stage's dataclass (pipeline.config.ConfigNode):
# the one way settings reach a stage.
# pass as a param (py=PY) if used in shell: lint flags globals in shell

# Each rules/*.smk appends the files its stage contributes to the default target.
FINAL_TARGETS = []
