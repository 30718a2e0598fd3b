# OphthAI Desktop — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel on this machine; a CUDA workstation overrides it, e.g.
#   make run TORCH_INSTALL="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_INSTALL ?= torch==2.13.0
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run serve test lint typecheck pytest bench dist clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# torch first (the right build for this machine), then the project.
$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH_INSTALL)
	$(BIN)/pip install -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH_INSTALL)
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(STAMP_RUN)

## Install and start the application on its embedded defaults.
run: $(STAMP_RUN)
	$(BIN)/ophthai serve

serve: run

## Install the dev tools and run every check and test.
test: $(STAMP_DEV) lint typecheck pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

pytest: $(STAMP_DEV)
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

## Benchmarks print JSON figures (not part of `make test`).
bench: $(STAMP_DEV)
	$(BIN)/python bench/api_list.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
