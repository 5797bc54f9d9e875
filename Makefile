# One entry point for set-up, checks and tests. `make test` works from a fresh clone
# on a machine that has only Python 3.11: it bootstraps uv, installs the locked
# workspace into .venv, installs redis-server where missing, lints and tests.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON := $(PYTHON)
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_LINK_MODE := copy

PYPROJECTS := pyproject.toml $(wildcard libs/*/pyproject.toml apps/*/pyproject.toml services/*/pyproject.toml)
MYPY_TARGETS := libs/common/src/chorus_common apps/chorus/src/chorus_cli $(wildcard services/*/src/chorus_*)

.PHONY: setup system-deps generate lint mypy hooks format test test-fast bench soak up clean

setup: $(VENV)/.synced system-deps

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: every service process imports FastAPI, pydantic and nats-py; from
# .pyc files that is ~0.4 s less CPU per process start (a pip install compiles too)
$(VENV)/.synced: $(UV) uv.lock $(PYPROJECTS)
	$(UV) sync --frozen --all-packages --compile-bytecode
	touch $@

uv.lock: $(PYPROJECTS) | $(UV)
	$(UV) lock

# Debian packages the tests run for real: redis-server, prometheus (and promtool), chromium
# (the HAP web UI under Playwright) and tmux (the HAP terminal UI).
DEBIAN_PACKAGES := redis-server prometheus chromium tmux
DEBIAN_PROBES := redis-server promtool prometheus chromium tmux

system-deps:
	@missing=; for bin in $(DEBIAN_PROBES); do command -v $$bin >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $(DEBIAN_PACKAGES)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; \
	fi

generate: $(VENV)/.synced
	$(BIN)/python deploy/grafana/generate.py
	$(BIN)/python docs/generate_metrics.py
	$(BIN)/python deploy/nats/generate.py

format: $(VENV)/.synced
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/codespell --toml pyproject.toml .
	$(BIN)/pre-commit validate-config .pre-commit-config.yaml
	$(MAKE) --no-print-directory mypy
	$(BIN)/lint-imports

mypy: $(VENV)/.synced
	$(BIN)/mypy $(MYPY_TARGETS)

# the same checks on every commit (.pre-commit-config.yaml)
hooks: $(VENV)/.synced
	$(BIN)/pre-commit install

test: setup lint
	$(BIN)/pytest -q

test-fast: $(VENV)/.synced
	$(BIN)/pytest -q -m "not slow" -x

# Every bench/ script, then bench/RESULTS.md (machine, date, figures beside baselines).
bench: setup
	$(BIN)/python bench/run_all.py

# 30 minutes of steady load on a full constellation; bench/SOAK.md shows memory over time.
soak: setup
	$(BIN)/python bench/soak.py --minutes 30

up: setup
	$(BIN)/chorus up

clean:
	rm -rf $(VENV) $(TOOLS) .chorus .pytest_cache .mypy_cache .ruff_cache
