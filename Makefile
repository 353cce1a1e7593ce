# Two commands for a fresh machine (only Python 3.11+ needed):
#   make run    set up .venv and solve the default problem (Eikonal, ε = 0.01) -> gpde-eikonal.h5
#   make test   set up .venv and run the test suite (the command CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-all benchmark figures

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
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

# Full-setting notebook results (results/) and figures (results/figures/): minutes for
# convergence, about an hour on two cores each for learning and the inverse problem, many hours
# for the BLJES study (2400 runs). Existing result files and finished study runs are reused, so an
# interrupted `make figures` continues where it stopped.
figures: setup
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/convergence.py
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/learning.py
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/inverse.py
	GPDE_NOTEBOOK_SETTING=full $(BIN)/python notebooks/bljes.py
