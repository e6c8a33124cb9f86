# `make pipeline`: install into .venv, then run the whole DVC pipeline.
# `make test`:     install into .venv, then run the test suite (what CI runs).
# `make test-fast`: the unit tests only (tests/unit, seconds each, not marked slow): the inner loop.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.14.1 + torchaudio 2.11.0 import together on a CPU-only machine (the CPU-only
# torch 2.13 wheel does not load torchaudio's CUDA build); the code runs on torch >= 2.11.
TORCH_PINS := torch==2.14.1 torchaudio==2.11.0 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install pipeline test test-docs test-fast lint bench clean-venv chromium postgresql

install: $(STAMP)

$(STAMP): pyproject.toml Makefile src/audiotag/plots/offline.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# uv installs the same versions as pip, faster (torch's CUDA wheels); it compiles the
	# bytecode as pip does (with PYTHONDONTWRITEBYTECODE set, every stage process would
	# otherwise compile torch again: twice the import time); pip where uv cannot be had
	$(BIN)/python -m pip install --quiet uv && \
	  $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(TORCH_PINS) -e '.[dev]' || \
	  $(BIN)/python -m pip install --quiet -e '.[dev]' $(TORCH_PINS)
	# the `dvc plots show/diff` page template with Vega inline (.dvc/plots.html): offline pages
	$(BIN)/python -m audiotag.plots.offline
	touch $@

pipeline: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	@echo
	@echo "Done. Results:"
	@echo "  reports/summary.md            every model side by side (also: cat reports/summary.md)"
	@echo "  metrics/<model>.json          test lwlrap per model   (dvc metrics show)"
	@echo "  plots/, metrics/train/        curves, per-class bars, weight plots (dvc plots show)"
	@echo "  models/<model>/model.pt       best checkpoints"
	@echo "Activate the environment with: source $(BIN)/activate"

# tests/e2e/test_report_render.py renders `dvc plots show`'s page in headless Chromium. CI
# machines are fresh Debian and run as root: install Debian's package when it is missing
# (elsewhere, without root, the test skips and says why).
chromium:
	@test -x /usr/bin/chromium || command -v chromium >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || \
	  echo "warning: could not install chromium; the HTML render test will be skipped"

# tests/e2e/test_tune_workers.py starts a PostgreSQL server (initdb + pg_ctl on a loopback port,
# data in a temp dir) for a study shared by two tuning workers: Debian's package, as above.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) || \
	  echo "warning: could not install postgresql; the shared-study test will be skipped"

# two workers (pytest-xdist), a test file each at a time: on 2 cores the end-to-end tests,
# mostly one stage process at a time, take about half as long; the tiny project they share
# (tests/e2e/conftest.py) is still reproduced once
test: install chromium postgresql
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not docs"; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# every command of docs/experiments.md, every sweep value (~30 min of both cores)
test-docs: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m docs tests/e2e/test_experiments_doc.py

test-fast: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 -m "not e2e and not slow" tests/unit

lint: install
	$(BIN)/ruff check src stages tests benchmarks

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/pipeline.py

clean-venv:
	rm -rf $(VENV)
