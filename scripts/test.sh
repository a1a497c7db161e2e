#!/usr/bin/env bash
# Set up and run the whole test suite: a virtual environment with the project and its test and peers extras,
# Redis and PostgreSQL on 127.0.0.1 (started, and installed from Debian's packages, only when none
# answers), then pytest. Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/setup.sh

ensure_venv "[test,peers]"  # peers: lime's competitors, for the benchmarks' quick runs (tests/test_benchmarks.py)
ensure_redis
ensure_postgres
ensure_chromium
ensure_pgbouncer

# Three processes on any machine: on 2 cores the suite's tests wait on services and subprocesses a third of the
# time (docs/development.md). Arguments given after these win (-n 0: one process).
exec .venv/bin/python -m pytest -n 3 --dist loadgroup "$@"
