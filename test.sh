#!/usr/bin/env bash
# Runs the whole test suite (sets up .venv on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/venv.sh
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
