# The two commands a newcomer needs: `make up` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
MAIN_STAMP := $(VENV)/.installed-main
PACKAGES := meshfed global_cp zone_cp zone_ingress mesh_dp meshctl
PYTEST_ARGS ?=
# Only folders that exist in this checkout (git keeps no empty ones).
LINT_PATHS := $(wildcard $(PACKAGES) tests benchmarks scripts)

.PHONY: up test venv system-deps lint lock lock-check fmt proto proto-check unit integration soak fuzz bench-deps clean

# Installs come from the locks in requirements/ (exact versions and hashes), never from the
# ranges in pyproject.toml, so an upstream release cannot change an unchanged tree's result.
# `make up` needs only the programs' lock; `make test` adds the dev lock on top (same versions).
# A line per step; on a terminal pip shows its own progress (each package, download bars),
# elsewhere (CI, `make test`'s log) it stays quiet.
QUIET_UNLESS_TTY = q=; [ -t 1 ] || q=-q;

$(MAIN_STAMP): requirements/main.txt pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) (first run only)…"; $(PYTHON) -m venv $(VENV); }
	@echo "installing runtime dependencies from requirements/main.txt (first run only)…"
	@$(QUIET_UNLESS_TTY) $(PY) -m pip install $$q --require-hashes --no-deps -r requirements/main.txt
	@echo "installing meshfed itself (editable)…"
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(STAMP): $(MAIN_STAMP) requirements/dev.txt
	@echo "installing test and lint tools from requirements/dev.txt (first run only)…"
	@$(QUIET_UNLESS_TTY) $(PY) -m pip install $$q --require-hashes --no-deps -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

up: $(MAIN_STAMP)
	$(VENV)/bin/meshctl up

# lint-imports: the dependency rule (the contracts under [tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(PACKAGES) scripts/check_lock.py
	$(VENV)/bin/lint-imports --no-cache

# The one documented way to change dependencies: edit pyproject.toml if needed, then
# `make lock` (keeps every locked version it can), `make proto` and `make test`. Upgrades:
# `make lock LOCK_ARGS=--upgrade` (all) or `LOCK_ARGS="--upgrade-package ruff"` (one).
LOCK_ARGS ?=
lock: $(STAMP)
	bash scripts/lock.sh $(LOCK_ARGS)

# Fails when pyproject.toml asks for something the locks do not pin (a stale lock).
lock-check: $(STAMP)
	$(PY) scripts/check_lock.py

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

# Generated code is committed; proto-check fails when it drifts from proto/.
proto: $(STAMP)
	bash scripts/gen-proto.sh meshfed/_gen

proto-check: $(STAMP)
	bash scripts/gen-proto.sh --check

# Two workers (pytest-xdist), each taking whole test modules, so a module's shared federation
# stays in one process; tests/support.free_port keeps the workers' ports apart.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps lock-check lint proto-check
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests

# The fast unit tests: those that start a real etcd are left out (`make test` runs everything).
unit: $(STAMP)
	$(PY) -m pytest -q -m "not etcd" tests/unit

integration: $(STAMP) system-deps
	$(PY) -m pytest -q tests/integration tests/e2e

# The long versions of the chaos and load suites (`make test` runs them bounded; tests/bounds.py):
# a 30 s global outage, 50 zone flaps, a 20 s SIGSTOP, 50 API clients for 60 s.
soak: $(STAMP) system-deps
	MESHFED_SOAK=1 $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests/chaos tests/load

# The fuzz properties with many more examples than in `make test` (FUZZ_EXAMPLES to change).
FUZZ_EXAMPLES ?= 20000
fuzz: $(STAMP)
	MESHFED_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider -p no:timeout $(PYTEST_ARGS) tests/fuzz

bench-deps:
	bash scripts/install-system-deps.sh --bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
