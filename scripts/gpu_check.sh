#!/usr/bin/env bash
# The CUDA-only checks in one short run; figures land in OUT_DIR as JSON, with a log.
#   bash scripts/gpu_check.sh [OUT_DIR]          (default: $OUT if set, else runs/gpu_check)
# On the lent GPU machine (device tool), from the repository root:
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# That machine has no package registry: its python3 holds CUDA torch + triton + transformers;
# rlvr's other pure-Python needs travel as wheels in .whl/ (see docs/gpu.md for the download
# command) and are installed into /tmp/site here. On a machine without CUDA every CUDA step is
# recorded as skipped with its reason and the script still exits 0, so it is tested on CPU
# (tests/test_gpu_check.py).
#
# Steps, in this order (each bounded by a timeout; one failing does not stop the others):
#   env     30s  versions, GPU name
#   tests  120s  pytest -m gpu (the suite's GPU-marked tests)
#   matmul  30s  8192^3 bf16 product: the measured dense peak
#   kernel  90s  fused log-prob/entropy: Triton vs naive vs chunked at N=16384 d=896 V=151936 bf16
#   bench  240s  scripts/bench_step.py --scale 0.5b --device cuda: rlvr's best GRPO step vs TRL's,
#                alternating (1 warm-up + 2 measured steps per side), random Qwen2.5-0.5B-shaped
#                model, bf16 on both sides: step_ratio, memory_ratio (CUDA max allocated)
#   train  180s  GRPO steps of recipes/quickstart.yaml (vLLM if installed, else HF) and of a random
#                Qwen2.5-0.5B-shaped model in bf16: step time by phase, tokens/s, logprob_mismatch
#   dist   120s  train.strategy=fsdp2, and ZeRO-2 (train.strategy=deepspeed; when deepspeed is
#                installed) under torchrun (1 rank, NCCL) vs a plain process: 2 quickstart steps
#                each, losses and gradient norms within 1e-3 relative
#   sync    60s  server-mode weight sync on one GPU (when `rlvr serve` exists and vLLM is installed)
# Time budget: the whole script (wheel install included) stays within GPU_CHECK_BUDGET_S seconds
# (default 510, under the device tool's 540 s call above): each step's timeout is its own limit
# or what is left of the budget, whichever is less, and a step that finds under 15 s left is
# recorded as skipped ("time budget spent"). The limits above add up to 870 s, the worst case;
# a typical run (tests ~1 min, kernel ~0.5 min, bench ~3 min, train ~2 min) fits.
# summary.json gathers every step's JSON.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUDGET_S=${GPU_CHECK_BUDGET_S:-510}
START_S=$SECONDS
OUT_DIR=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

limit() {  # limit SECONDS: that, or what is left of the budget if less
  local left=$((BUDGET_S - (SECONDS - START_S)))
  echo $(($1 < left ? $1 : left))
}

step() {  # step NAME TIMEOUT CMD...
  local name=$1 limit; limit=$(limit "$2"); shift 2
  echo "== $name ($(date +%T), limit ${limit}s)" | tee -a "$LOG"
  if [ "$limit" -lt 15 ]; then
    echo "{\"step\": \"$name\", \"status\": \"skipped\", \"reason\": \"time budget spent (${BUDGET_S}s)\"}" >"$OUT_DIR/$name.json"
    echo "   skipped: time budget spent" | tee -a "$LOG"
    return
  fi
  timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "{\"step\": \"$name\", \"status\": \"failed\", \"reason\": \"timeout after ${limit}s\"}" >"$OUT_DIR/$name.json"
  fi
  echo "   rc=$rc" | tee -a "$LOG"
}

step env 30 "$PY" scripts/gpu_check.py env --out "$OUT_DIR"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>>"$LOG"; then
  step tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/
else
  echo '{"step": "tests", "status": "skipped", "reason": "no CUDA device"}' >"$OUT_DIR/tests.json"
fi
step matmul 30 "$PY" scripts/gpu_check.py matmul --out "$OUT_DIR"
step kernel 90 "$PY" scripts/gpu_check.py kernel --out "$OUT_DIR"
# bench_step.py stops itself (and its workers) 20 s before the step's limit, so its JSON is written
B=$(limit 240)
step bench "$B" "$PY" scripts/gpu_check.py bench --out "$OUT_DIR" --reps 2 --timeout $((B > 40 ? B - 20 : B / 2))
step train 180 "$PY" scripts/gpu_check.py train --out "$OUT_DIR" --steps 4 --timeout 80
step dist 120 "$PY" scripts/gpu_check.py dist --out "$OUT_DIR" --steps 2 --timeout 40
step sync 60 "$PY" scripts/gpu_check.py sync --out "$OUT_DIR"

"$PY" - "$OUT_DIR" <<'EOF'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {}
for name in ("env", "tests", "matmul", "kernel", "bench", "train", "dist", "sync"):
    path = out / f"{name}.json"
    summary[name] = json.loads(path.read_text()) if path.is_file() else {"status": "missing"}
if summary["tests"].get("status") == "missing":
    log = (out / "gpu_check.log").read_text()
    m = re.findall(r"^(\d+ (?:passed|failed|error).*?) in [0-9.]+s", log, re.M)
    line = m[-1] if m else "no pytest summary line (see gpu_check.log)"
    status = "ok" if m and "failed" not in line and "error" not in line else "failed"
    summary["tests"] = {"step": "tests", "status": status, "pytest": line}
(out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
print(json.dumps({k: v.get("status") for k, v in summary.items()}))
EOF
