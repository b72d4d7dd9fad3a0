# The two commands a newcomer needs: `make up` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PACKAGES := meshfed global_cp zone_cp zone_ingress mesh_dp meshctl
PYTEST_ARGS ?=
# Only folders that exist in this checkout (git keeps no empty ones).
LINT_PATHS := $(wildcard $(PACKAGES) tests benchmarks)

.PHONY: up test venv system-deps lint fmt proto proto-check unit integration bench-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

up: $(STAMP)
	$(VENV)/bin/meshctl up

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(PACKAGES)

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

# Generated code is committed; proto-check fails when it drifts from proto/.
proto: $(STAMP)
	bash scripts/gen-proto.sh meshfed/_gen

proto-check: $(STAMP)
	bash scripts/gen-proto.sh --check

test: $(STAMP) system-deps lint proto-check
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP) system-deps
	$(PY) -m pytest -q tests/integration tests/e2e

bench-deps:
	bash scripts/install-system-deps.sh --bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
