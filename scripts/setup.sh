# Sourced by the scripts: a virtual environment in .venv with the project installed, reused and
# brought up to date when it is already there. EXTRAS (e.g. "[test]") picks optional dependencies.

ensure_venv() {
  local extras=${1:-}
  local python=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    # Debian's python3 lacks venv until python3-venv is installed
    "$python" -m venv .venv 2>/dev/null || { apt_install python3-venv && rm -rf .venv && "$python" -m venv .venv; }
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".$extras"
}
