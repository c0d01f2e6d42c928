# medref: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medref-installed
DEMO := experiments/demo.yaml
# the exact torch pair of the development machine, installed before medref (pyproject.toml only sets
# lower bounds, so `pip install medref` keeps a cluster's own torch build)
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help venv demo test test-fast lint clean-demo

help: ## List the targets with what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create or update the virtual environment (.venv) with everything medref needs

demo: $(STAMP) ## Run the main job on the built-in synthetic data (CPU, a few minutes)
	bash scripts/demo.sh

test: $(STAMP) ## Run the whole test suite (slow end-to-end tests included; starts a local PostgreSQL and Slurm)
	bash scripts/ci/postgres.sh
	bash scripts/ci/slurm.sh
	$(BIN)/pytest -q

test-fast: $(STAMP) ## Run the tests without the slow ones
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP) ## Check style with ruff
	$(BIN)/ruff check medref_cli tests

clean-demo: ## Delete the demo's results (results/demo)
	rm -rf results/demo
