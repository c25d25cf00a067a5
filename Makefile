# genreg: `make run` runs the whole pipeline on embedded defaults, `make test` the test suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# dvc.yaml's stage commands call `genreg`, so the venv's bin goes first on PATH
export PATH := $(abspath $(BIN)):$(PATH)

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup run test lint bench serve clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

setup: $(BIN)/.installed ## create .venv and install genreg with its dev tools

run: setup ## prepare -> train -> evaluate -> analyze on MNIST (dvc repro, tracked in MLflow)
	$(BIN)/dvc repro

test: setup ## the test suite (what CI runs)
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check genreg pipelines tests benchmarks
	$(BIN)/ruff format --check genreg pipelines tests benchmarks

bench: setup ## batched engine vs per-genome loop, seconds per generation
	$(BIN)/python benchmarks/throughput.py

serve: setup ## serve the Prefect deployment with its schedule on this machine
	$(BIN)/genreg serve

clean:
	rm -rf runs data/prepared .pytest_cache
