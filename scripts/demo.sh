#!/usr/bin/env bash
# The main job on this machine, nothing else needed: set up .venv, then `python -m producer local`
# (trains the demo model if missing, starts local workers on an embedded broker, explains the demo
# validation set into data/results.db). Arguments go to `producer local`, e.g. --limit 40.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
source scripts/setup.sh

ensure_venv
exec .venv/bin/python -m producer local "$@"
