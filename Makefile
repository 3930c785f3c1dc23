# One-command entry points. Needs Python 3.11+ and Node.js 20+; everything else is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV := .venv-checkov/bin/checkov

.PHONY: setup test unit lint demo run bench clean

setup: $(STAMP) node_modules/.bin/azurite

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

node_modules/.bin/azurite: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.bin/azurite

$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --upgrade pip
	.venv-checkov/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $(CHECKOV)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# every lane (tests/unit, tests/integration, tests/e2e) with coverage: what CI runs. Two at a time, then the
# tests that measure time or rates (marked alone) with nothing beside them
test: lint $(CHECKOV)
	$(BIN)/python -m pytest -m "not alone" -n 2 --cov --cov-report=
	$(BIN)/python -m pytest -m alone --cov --cov-append --cov-report=term:skip-covered --cov-fail-under=90

# the fast lane: pure rules, no network, no storage emulator, no processes (seconds)
unit: setup
	$(BIN)/python -m pytest tests/unit -q

demo: setup
	$(BIN)/python -m devtools.stack demo

run: setup
	$(BIN)/python -m devtools.stack run

bench: setup
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .venv-checkov node_modules .pytest_cache .ruff_cache .coverage
