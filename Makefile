# Two commands on a fresh machine: `make run` (set up + whole pipeline) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# CPU wheel by default (it is on this machine's disk); CUDA users: make TORCH_SPEC='torch>=2.4' ...
TORCH_SPEC ?= torch==2.13.0
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := False
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: help run test install lint clean airflow mlflow bench bench-quality repro exp plots serve secrets
.DEFAULT_GOAL := help

# What `make serve` serves (python -m mtrec serve): SERVE_MODEL, e.g. models:/mtrec/3, or when
# empty params.yaml's registered model at serving.alias, from registry.tracking_uri.
SERVE_MODEL ?=
SERVE_PORT ?= 5001
ARGS ?=

help: ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## /{printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(VENV)/.installed ## create .venv and install mtrec (the first target `run` needs)

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, on its own: a plain resolve would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c constraints.txt uv
	# Bytecode compiled once here: uv does not by default, and where PYTHONDONTWRITEBYTECODE is
	# set (this machine) every process would recompile what it imports (validate 11.5 -> 7 s).
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -c constraints.txt \
		-e ".[dev,stack]"
	touch $@

run: install ## set up, run the whole pipeline (dvc repro) on the bundled data, print results
	dvc repro
	@echo
	@cat reports/results.md
	@echo
	@python -c "import json; r=json.load(open('reports/registration.json')); print('registered', r['model_name'], 'v' + r['version'], '->', ', '.join('@' + a for a in r['aliases']))"

# One torch thread per process: the end-to-end tests run several processes at once (Airflow
# workers, dvc, stages), and two-thread processes on two cores slow each other down severalfold.
# Two pytest-xdist workers: most tests are one single-threaded process at a time, so the second
# core would idle; tests sharing a costly set-up or the Airflow stacks carry an xdist_group mark
# (--dist loadgroup keeps each group on one worker).
test: install ## the test suite (unit and end-to-end)
	OMP_NUM_THREADS=1 python -m pytest -n 2 --dist loadgroup --durations=25

# The venv's tools with its bin/ on PATH (dvc.yaml's commands run `python -m mtrec`), so they
# work whether or not the venv is active. Order-only: an existing venv is enough.
repro: | $(VENV)/.installed ## dvc repro: rerun what changed (ARGS: e.g. a stage name)
	dvc repro $(ARGS)

exp: | $(VENV)/.installed ## dvc exp run (ARGS, e.g. ARGS='-S target.train_fraction=0.2')
	dvc exp run $(ARGS)

plots: | $(VENV)/.installed ## dvc plots show: the transfer curve as HTML (dvc_plots/index.html)
	dvc plots show $(ARGS)

serve: | $(VENV)/.installed ## REST API of the registry's @champion on :5001 (POST /invocations)
	python -m mtrec serve $(if $(SERVE_MODEL),--model $(SERVE_MODEL)) --port $(SERVE_PORT)

# Local UIs. `make airflow`: Airflow standalone on the project's DAGs (UI :8080, login printed;
# Ctrl-C stops it all). `make mlflow`: the MLflow UI on the local registry (:5000).
airflow: install ## Airflow standalone on the project's DAGs (UI on :8080)
	scripts/airflow-standalone.sh

mlflow: install ## the MLflow UI on the local registry (:5000)
	mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

# Benchmarks (benchmarks/README.md): mtrec vs torch-rechub (its own venv, never a project
# dependency), the plain-PyTorch floor, ranking, stages, scaling. BENCH_ARGS: e.g. --threads 1.
BENCH_VENV := benchmarks/.venv
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: benchmarks/requirements-peer.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	# torch pinned first, then the peer without its own resolve (it would pull a newer torch).
	$(BENCH_VENV)/bin/python -m pip install --quiet "torch==2.13.0"
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps -r benchmarks/requirements-peer.txt
	touch $@

bench: install $(BENCH_VENV)/.installed ## mtrec against torch-rechub and a plain-PyTorch floor
	python benchmarks/run.py --peer-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# Ranking quality vs RecBole 1.2.1 (its own venv; pins and why: benchmarks/README.md, Quality).
# Cached per (side, protocol, model, seed): QUALITY_ARGS=--force recomputes, e.g.
# QUALITY_ARGS='--protocols amazon-phone'.
QUALITY_VENV := benchmarks/.venv-recbole
QUALITY_ARGS ?=

$(QUALITY_VENV)/.installed: benchmarks/requirements-recbole.txt
	$(PYTHON) -m venv $(QUALITY_VENV)
	$(QUALITY_VENV)/bin/python -m pip install --quiet --upgrade pip
	# the local CPU torch first, then RecBole, then the pins its 1.2.1 code needs.
	$(QUALITY_VENV)/bin/python -m pip install --quiet "torch==2.13.0"
	$(QUALITY_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-recbole.txt
	touch $@

bench-quality: install $(QUALITY_VENV)/.installed ## ranking quality against RecBole 1.2.1 (own venv)
	python benchmarks/quality.py --peer-python $(QUALITY_VENV)/bin/python $(QUALITY_ARGS)

lint: install ## ruff check and format check
	ruff check .
	ruff format --check .

clean: ## delete every pipeline output (data, models, reports, registry)
	rm -rf data/interim data/processed models reports runs mlflow.db mlartifacts

secrets: ## write .env for docker compose with fresh random secrets (never overwrites one)
	$(PYTHON) scripts/make_secrets.py
