# Junction developer commands. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help dev demo test lint schemas bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# setup.py and the C source: the optional native sealer is built by the install (ADR-0025)
$(STAMP): pyproject.toml setup.py junction/store/_sealer.c
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,tracing]'
	touch $(STAMP)

dev: $(STAMP) ## create .venv and install Junction with its dev tools

demo: $(STAMP) ## run the end-to-end demo on the embedded default (SQLite, files, local sink)
	$(BIN)/junction demo

# byte-code of Junction's own packages (an editable install leaves them uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set every spawned process would compile ~160 modules again)
PACKAGES := junction connectors mappings scoring outbound schemas bench tests

test: $(STAMP) ## run the test suite (PostgreSQL tests need JUNCTION_TEST_PG_URL or the local server)
	$(BIN)/python -m compileall -q $(PACKAGES) >/dev/null
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff, mypy, import layers, committed schemas, mapping cases
	$(BIN)/ruff check .
	$(BIN)/mypy junction connectors mappings scoring outbound schemas
	$(BIN)/lint-imports
	$(BIN)/junction schemas export --check
	$(BIN)/junction api openapi --check
	$(BIN)/junction mappings test

schemas: $(STAMP) ## regenerate schemas/json
	$(BIN)/junction schemas export

bench: $(STAMP) ## run the end-to-end benchmark (1,000,000 rows)
	$(BIN)/python -m bench e2e

clean: ## remove the venv and generated files
	rm -rf $(VENV) junction-demo .pytest_cache .mypy_cache .ruff_cache
