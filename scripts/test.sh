#!/usr/bin/env bash
# Set up (a virtual environment with the project and its test extra) and run the whole test suite.
# Safe to rerun: an existing .venv is reused and only brought up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

exec .venv/bin/python -m pytest "$@"
