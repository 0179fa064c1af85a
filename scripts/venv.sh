#!/usr/bin/env bash
# Creates .venv and installs the project into it (again only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
# Optional dependency groups of pyproject.toml to install (.ci/run adds `lint`).
EXTRAS="${EXTRAS:-dev}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "iop-bot needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    echo "python3 -m venv is unavailable; trying virtualenv instead" >&2
    "$PYTHON" -m pip install --user --quiet virtualenv
    "$PYTHON" -m virtualenv --quiet "$VENV"
  fi
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
  touch "$stamp"
fi
