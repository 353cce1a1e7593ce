# Two commands for a fresh machine (only Python 3.11+ needed):
#   make run    set up .venv and solve the default problem (Eikonal, ε = 0.01) -> gpde-eikonal.h5
#   make test   set up .venv and run the test suite (the command CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-all benchmark figures

# setuptools >= 70.1 builds wheels by itself, so the install test (tests/test_install.py) builds one offline.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=70.1'
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/gpde solve

test: setup
	$(BIN)/python -m pytest -n 2 -q

# Includes the checks at published sizes (several minutes).
test-all: setup
	$(BIN)/python -m pytest -n 2 -q -m ""

benchmark: setup
	$(BIN)/python benchmarks/solve.py --sizes all --out benchmarks/solve-results.md

# Full-setting notebook results (results/) and figures (results/figures/, copied to the committed
# docs/figures/). Wall times on the 2-core machine while sharing it with 3-4 other jobs:
# convergence 3 min, inverse 8 min, the seven elliptic learning runs 68 min, BLJES 208 runs 4.7 h
# summed over runs (two to three at a time) plus 56 runs in 22 min (idle, two at a time); the Gibbs learning runs take 19 min (Eikonal, alone)
# and 25 min (Burgers, sharing). Existing result files and finished study runs are reused
# (with them `make figures` takes ~30 s), so an interrupted `make figures` continues where it
# stopped.
figures: setup
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/convergence.py
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/learning.py
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/inverse.py
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/bljes.py
	mkdir -p docs/figures && cp results/figures/*-full.png docs/figures/
