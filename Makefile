# Two commands set everything up on a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup run test lint fmt dev lock clean

setup: $(STAMP)

# The product and, beside it, the devkit (the demo store, the fake target and the test harness).
$(STAMP): requirements.lock pyproject.toml devkit/pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e . -e devkit
	@touch $(STAMP)

# The instance folder gets the project's dagster.yaml, and the writers' pool is created up front: two runs
# that meet a missing pool at the same moment could otherwise both be given its one slot.
$(DAGSTER_HOME)/dagster.yaml: deploy/local/dagster.yaml $(STAMP)
	@mkdir -p $(DAGSTER_HOME) && cp deploy/local/dagster.yaml $@
	@$(BIN)/dagster instance concurrency set duckdb_writer 1 >/dev/null

run: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m cancel_pipeline.cli run

test: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg dev -h 127.0.0.1 -p 3000

# Re-resolve the pinned set from pyproject.toml (needs the package registry).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -e ".[dev]" -e devkit
	{ echo "# Pinned, complete dependency set (runtime + development). Regenerate with 'make lock'."; \
	  .lockenv/bin/pip freeze --exclude-editable | grep -v '^#'; } > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
