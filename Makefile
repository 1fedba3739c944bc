# The two commands of the README:
#   make demo   run the workflow on the embedded default and print both paper tables
#   make test   run the test suite (what CI runs, through .ci/run)
# and, after a run, make report: results/report.html, Snakemake's self-contained report of it.
# Both set up .venv on first use; the set-up reruns only when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.eqlv2-installed
CORES ?= 2

.PHONY: setup demo report test lint clean-results gpu-bundle cuda-check

setup: $(STAMP)

# mmcv 2.1.0 ships no wheel for torch 2.13, so its ops are compiled here (about 10 minutes on 2 cores,
# once: pip caches the wheel).  Its build imports torch (hence --no-build-isolation and torch first)
# and setuptools' pkg_resources, gone in setuptools 82, while torch 2.13 asks for setuptools>=77.0.3:
# hence the range below, which both accept.
# With a CUDA torch, src/eqlv2/cuda_build.py sets FORCE_CUDA, TORCH_CUDA_ARCH_LIST and CUDA_HOME (or stops
# with one line when nvcc's CUDA major is not torch's), so that a login node without a GPU compiles the
# CUDA operators too; with a CPU torch (here) it sets nothing.  TORCH_INDEX_URL chooses the torch variant,
# e.g. make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 for an older driver (README).
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL) --extra-index-url https://pypi.org/simple,)
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "eqlv2 needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_INDEX) torch==2.13.0
	$(BIN)/pip install --quiet numpy wheel ninja psutil "setuptools>=77.0.3,<82"
	$(BIN)/python src/eqlv2/cuda_build.py env --cuda-home $(VENV)/cuda-home > $(VENV)/cuda-build.env
	@cat $(VENV)/cuda-build.env
	. $(VENV)/cuda-build.env && MMCV_WITH_OPS=1 MAX_JOBS=$(CORES) \
	  $(BIN)/pip install --quiet --no-build-isolation mmcv==2.1.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -c "from mmcv.ops import RoIAlign, nms; import mmdet, eqlv2"
	touch $@

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES) all
	@echo
	@cat results/toy/paper_table.md
	@echo
	@cat results/toy/openimages_table.md
	@$(MAKE) --no-print-directory report

# The last run's report: both tables, the plots, the per-class CSV, the workflow graph and the job runtimes,
# in one HTML file that opens without a server or network.  SNAKEMAKE_ARGS passes the run's own options
# (e.g. SNAKEMAKE_ARGS="--configfile config/lvis_v1.yaml") so the report is of that run.
SNAKEMAKE_ARGS ?=
report: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake $(SNAKEMAKE_ARGS) --report results/report.html
	@echo
	@echo "The report: $(CURDIR)/results/report.html"

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --lint

# Compile (only) mmcv 2.1.0's RoIAlign and nms CUDA sources and their bindings for sm_80 and sm_90 against
# torch 2.13.0's CUDA build, with nvcc from NVIDIA's PyPI wheels; no GPU needed.  Downloads (about 2 GB)
# stay in .cuda-check/ for reruns.  Ends with "compiled for sm_80 sm_90".
cuda-check: $(STAMP)
	$(BIN)/python src/eqlv2/cuda_build.py check --work .cuda-check

# What benchmarks/gpu_check.sh carries to a GPU machine without network (benchmarks/bundle/, about 35 MB).
gpu-bundle: $(STAMP)
	PYTHON=$(BIN)/python benchmarks/gpu_bundle.sh

clean-results:
	rm -rf results logs .snakemake
