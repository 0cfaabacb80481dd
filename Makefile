# Two entry points (see README): `make demo` and `make test`. Everything installs into ./.venv.
# torch is installed first and explicitly (CPU build 2.13.0 here); a GPU user installs a CUDA torch into the venv
# before `make install` and pip keeps it (see README).
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: install demo report test lint clean-demo

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,mp]'
	touch $@

install: $(BIN)/.installed

demo: install
	. $(BIN)/activate && snakemake --cores $(CORES) --configfile config/demo.yaml
	. $(BIN)/activate && snakemake --cores 1 --configfile config/demo.yaml --report results/demo/report.html
	@cat results/demo/screen/user/summary.md
	@echo "demo done: results/demo/ (tables: *.parquet, report: results/demo/report.html; the example CIFs of data/examples screened with the shipped model: results/demo/screen/user/)"

test: install
	. $(BIN)/activate && python -m pytest -q

lint: install
	. $(BIN)/activate && ruff check . && ruff format --check . && snakefmt --check Snakefile rules/ && snakemake --lint

clean-demo:
	rm -rf results/demo
