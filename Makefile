# Flywheel: `make demo` runs the whole loop on the sample site; `make test` runs the suite.
# Both create what is missing: the project venv (CPU torch first, then the project), the
# Label Studio server's own venv (it pins packages that conflict with Prefect) and Debian's tesseract-ocr.

PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-ls
BIN := $(VENV)/bin

export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv tesseract demo test lint format ui down services-up browser-check browser-check-round clean

venv: $(VENV)/.installed $(LS_VENV)/.installed tesseract

# The scrub stage reads text inside images with Debian's tesseract-ocr (Apache-2.0, English model included).
tesseract:
	@command -v tesseract >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tesseract-ocr >/dev/null; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --disable-pip-version-check label-studio==1.23.2
	touch $@

demo: venv
	$(BIN)/flywheel demo

test: venv lint
	$(BIN)/python -m pytest -ra

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: venv
	$(BIN)/flywheel ui

services-up: venv
	$(BIN)/flywheel services up

down:
	@if [ -x $(BIN)/flywheel ]; then $(BIN)/flywheel services down; fi

# After `make demo`: headless Chromium (Debian's package) opens a pushed task in Label Studio as an
# annotator would and the newest release card, and fails unless their images really render.
browser-check: venv
	command -v chromium >/dev/null || apt-get install -y -q chromium
	cd deploy/browser && npm install --no-audit --no-fund --silent
	$(BIN)/python deploy/browser/check_ui.py

# Self-contained (no `make demo`): its own Label Studio with a round's project, opened in headless Chromium at
# 1400x900 as an annotator and a reviewer would; fails unless the round tab opens first, the internal columns are
# hidden, the choices fit under the image without scrolling, the instructions show and the review tab's columns fit.
# Screenshots in data/screenshots/round-ui. Not part of `make test` (needs apt and npm).
browser-check-round: venv
	command -v chromium >/dev/null || apt-get install -y -q chromium
	cd deploy/browser && npm install --no-audit --no-fund --silent
	$(BIN)/python -m deploy.browser.check_round_ui

clean: down
	rm -rf data .cache .prefect

# Benchmarks: each target sets up the peers' own venv (.venv-bench) and prints ratios; QUICK=1 is small.
-include bench/*.mk
