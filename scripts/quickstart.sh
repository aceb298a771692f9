#!/usr/bin/env bash
# Set up (or reuse) .venv, then train the bundled tiny model on the arithmetic task with GRPO
# and print held-out accuracy before and after. Extra arguments are recipe overrides, e.g.
#   bash scripts/quickstart.sh rollout.engine=hf train.steps=40
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec "${RLVR_VENV:-.venv}/bin/rlvr" train recipes/quickstart.yaml "$@"
