#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the test suite. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -k config        bash scripts/test.sh -m slow
# pytest exits 5 when no test ran; that is a failure here too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec "${RLVR_VENV:-.venv}/bin/python" -m pytest -q "$@"
