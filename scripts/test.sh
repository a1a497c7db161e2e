#!/usr/bin/env bash
# Set up and run the whole test suite: a virtual environment with the project and its test extra,
# Redis and PostgreSQL on 127.0.0.1 (started, and installed from Debian's packages, only when none
# answers), then pytest. Safe to rerun: an existing .venv is reused and brought up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv && rm -rf .venv && "$PYTHON" -m venv .venv; }
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

ensure_redis
ensure_postgres

exec .venv/bin/python -m pytest "$@"
