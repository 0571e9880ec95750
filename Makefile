# Sweeps and experiment tracking for regularised NumPy MLPs. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SWEEP ?= sweeps/default.toml
N_JOBS ?=
PORT ?= 5000
STUDY ?=
SCHEDULER ?=
CREDENTIALS ?=
CHAPTER_DATA ?= sine
CHAPTER_ROWS := $(sort $(wildcard sweeps/chapter-*.toml))
PYTEST_ARGS ?=

# The venv is rebuilt only when pyproject.toml changes (the stamp file is newer otherwise).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: help setup browser postgres sweep chapter ui dashboard head worker report test test-fast bench bench-pareto bench-quality lint format docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## Create .venv and install the project with its dev extra

sweep: setup ## Run a sweep: make sweep [SWEEP=sweeps/digits.toml] [N_JOBS=2]
	$(PY) -m pipeline sweep $(SWEEP) $(if $(N_JOBS),--n-jobs $(N_JOBS))

# Every row of the chapter's table as a study of its own (same budget, network and weights),
# then the table with its measured column: reports/chapter-...-vs-.../index.html
chapter: setup ## The chapter's table measured: make chapter [CHAPTER_DATA=breast_cancer]
	@for row in $(CHAPTER_ROWS); do \
	  name=$$(basename $$row .toml)-$(CHAPTER_DATA); \
	  $(PY) -m pipeline sweep $$row --set data.name=$(CHAPTER_DATA) --set study.name=$$name \
	    || exit 1; \
	done
	$(PY) -m pipeline report $(foreach row,$(CHAPTER_ROWS),$(notdir $(row:.toml=))-$(CHAPTER_DATA))

ui: setup ## MLflow UI over the local store on 127.0.0.1: make ui [PORT=5000]
	$(PY) -m pipeline ui --port $(PORT)

dashboard: setup ## optuna-dashboard over the study storage, read-only: make dashboard [PORT=8080]
	$(PY) -m pipeline dashboard --port $(if $(filter command line,$(origin PORT)),$(PORT),8080)

head: setup ## Shared services on 127.0.0.1 (Dask scheduler, storage proxy, MLflow server)
	$(PY) -m pipeline head

# A secure cluster's bundle names its scheduler; a plain one's is tcp://127.0.0.1:8786 by default
worker: setup ## Join a cluster: make worker [SCHEDULER=tcp://HOST:8786] [CREDENTIALS=bundle.json]
	$(PY) -m pipeline worker $(if $(CREDENTIALS),--credentials $(CREDENTIALS)) \
	  $(or $(SCHEDULER),$(if $(CREDENTIALS),,tcp://127.0.0.1:8786))

report: setup ## Reports under reports/ for every study, or make report STUDY="a b" (compared)
	$(PY) -m pipeline report $(STUDY)

# The browser test drives Debian's chromium; Playwright's own browser download cannot work here.
# Installed when missing and root; else that test is skipped, saying why. STRICT=1 (CI) fails.
browser: ## Install Debian's chromium for the browser test, when missing (as root)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then \
	    echo "installed chromium"; \
	  else \
	    echo "chromium could not be installed: the browser test will be skipped"; \
	    [ -z "$(STRICT)" ]; \
	  fi; }

# The PostgreSQL test starts Debian's server as an unprivileged user in a temporary folder.
postgres: ## Install Debian's PostgreSQL server for its test, when missing (as root)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	     DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; then \
	    echo "installed postgresql"; \
	  else \
	    echo "postgresql could not be installed: its test will be skipped"; \
	    [ -z "$(STRICT)" ]; \
	  fi; }

# One pytest process per core (pytest-xdist): the end-to-end tests spend much of their time
# waiting on processes they started, so two of them share two cores well.
TEST_JOBS ?= auto

test: setup browser postgres ## Run the whole test suite (slow end-to-end tests included)
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal --durations=20 $(PYTEST_ARGS)

test-fast: setup ## Run the tests without the slow end-to-end ones
	$(PY) -m pytest -n $(TEST_JOBS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

bench: setup postgres ## Speed benchmarks, printed as ratios measured side by side
	$(PY) -m benchmarks

bench-pareto: setup ## Multi-objective samplers against random search: hypervolume, 3 seeds (about 8 min)
	$(PY) -m benchmarks pareto

bench-quality: setup ## The answer on every shipped data set, 3 sweep seeds (about 11 min)
	$(PY) -m benchmarks quality

lint: setup ## ruff check, format check and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: setup ## Regenerate the sweep-file reference's tables (docs/sweep-file.md) from the code
	$(PY) docs/generate.py

format: setup ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove the venv and caches (keeps mlruns/ and reports/)
	rm -rf $(VENV) .pytest_cache .ruff_cache
