# FaceGate developer entry points. `make run` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_EXTRA ?= cpu

.PHONY: run test chromium lint models bench bench-fr accuracy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(RUNTIME_EXTRA)]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(RUNTIME_EXTRA),dev]'
	touch $@ $(VENV)/.installed-run

## Install, build the models, migrate the (SQLite) database and start the service on its defaults.
run: $(VENV)/.installed-run
	$(BIN)/facegate models build
	$(BIN)/facegate db upgrade
	@echo
	@echo "FaceGate starts on http://127.0.0.1:8000 (stop with Ctrl-C)."
	@echo "Create the first admin key in another shell:"
	@echo "    $(BIN)/facegate keys create --role admin --name first-admin"
	@echo
	$(BIN)/facegate serve

## Install the test dependencies and run the whole test suite.
test: $(VENV)/.installed-dev chromium
	$(BIN)/python -m pytest

## Debian's Chromium for the console's browser tests (tests/test_console_browser.py), with apt-get
## where this user may run it; never fails: without it those tests skip and say why.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "note: $(CHROMIUM) is absent and apt-get is not available: the browser tests will skip"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "note: $(CHROMIUM) is absent and apt-get needs root: the browser tests will skip"; exit 0; fi; \
	  echo "installing chromium with apt-get for the browser tests..."; \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 \
	    || { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null 2>&1; } \
	    || echo "note: apt-get could not install chromium: the browser tests will skip"; \
	fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check app models tests scripts
	$(BIN)/ruff format --check app models tests scripts
	$(BIN)/mypy

models: $(VENV)/.installed-run
	$(BIN)/facegate models build

bench: $(VENV)/.installed-dev
	$(BIN)/python scripts/bench_pipeline.py

## FaceGate against face_recognition (its own venv under var/): LFW accuracy and frames/s, ~15 min.
bench-fr: $(VENV)/.installed-dev
	nice $(BIN)/python scripts/bench_vs_face_recognition.py

accuracy: $(VENV)/.installed-run
	$(BIN)/facegate eval verify --pairs ../shared/faces/lfw-dev/pairs.csv

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
