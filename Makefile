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

## Install and start the desktop application (window, worker, embedded API).
run: $(STAMP_RUN)
	$(BIN)/ophthai

## Install and run the same services headless (API, worker, watch folder).
serve: $(STAMP_RUN)
	$(BIN)/ophthai serve

## Install the dev tools and run every check and test.
test: $(STAMP_DEV) lint typecheck pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

# The slowest tests are listed at the end (CI has a time limit: see where it goes).
pytest: $(STAMP_DEV)
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest --durations=40

## Benchmarks print JSON figures (not part of `make test`).
bench: $(STAMP_DEV)
	$(BIN)/python bench/api_list.py

## The one-folder desktop build (PyInstaller, build.spec): dist/ophthai/ophthai.
## About 2 minutes and 850 MB with the CPU torch (a CUDA torch adds its libraries);
## not part of `make test`.
STAMP_DIST := $(VENV)/.installed-dist
FROZEN_APP := dist/ophthai/ophthai
FROZEN_SOURCES := build.spec pyproject.toml \
	$(shell find ophthai_desktop -type f -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

$(STAMP_DIST): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install $(TORCH_INSTALL)
	$(BIN)/pip install -e '.[dist]'
	touch $@ $(STAMP_RUN)

$(FROZEN_APP): $(STAMP_DIST) $(FROZEN_SOURCES)
	$(BIN)/pyinstaller --noconfirm build.spec
	touch $@

## Build dist/ophthai (again only when the sources changed since the last build).
dist: $(FROZEN_APP)

.PHONY: dist-test
## Build if needed, then smoke-test the frozen app (serve, the tiny model, the window).
dist-test: $(FROZEN_APP) $(STAMP_DEV)
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -m frozen tests/e2e/test_frozen_app.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
