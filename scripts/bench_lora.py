"""LoRA vs full fine-tuning on one learner update: trainable parameters, peak memory, step time.

    PYTHONPATH=. python scripts/bench_lora.py MODEL_DIR [--updates 5] [--rank 16] [--json OUT]

Each mode runs in its own child process so that its peak resident memory (``ru_maxrss``, the
process's high-water mark: imports, model, reference, optimizer state, activations) is its
own; ``rss_after_imports_mib`` is that mark before the learner is built (on a small model the
imports set the peak). The persistent tensors are counted exactly: weights (policy, plus the
reference model for full fine-tuning), gradients and AdamW moments. The
batch is the fixed 16-row batch of tests/dist_cases.py (4 groups of 4, ragged lengths); KL to
the reference is on (full: a second model; LoRA: the base with adapters disabled). Step time
is the median of ``--updates`` calls of ``Learner.update`` after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(model_dir: str, mode: str, updates: int, rank: int) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from dist_cases import PAD, case_batch, case_recipe

    from rlvr.config import Recipe
    from rlvr.learner import Learner
    from rlvr.lora import trainable_parameters

    torch.set_num_threads(1)
    recipe = case_recipe(model_dir, {"algo": {"kl_coef": 0.05}})
    if mode == "lora":
        lora = {"rank": rank, "alpha": 2.0 * rank, "target_modules": "all-linear"}
        recipe = Recipe.model_validate({**recipe.model_dump(), "lora": lora})
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports done
    learner = Learner(recipe, pad_id=PAD, weights_path=model_dir, resumed=False)
    batch = case_batch({})
    learner.update(batch)
    times = []
    for _ in range(updates):
        t0 = time.perf_counter()
        learner.update(batch)
        times.append(time.perf_counter() - t0)
    trainable, total = trainable_parameters(learner.model)
    models = [learner.model] + ([learner.ref_model] if learner.ref_model is not None else [])
    weights = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
    moments = sum(
        t.numel() * t.element_size()
        for state in learner.optimizer.state.values()
        for t in state.values()
        if torch.is_tensor(t)
    )
    grads = sum(p.numel() * p.element_size() for p in learner.model.parameters() if p.requires_grad)
    return {
        "mode": mode,
        "trainable_params": trainable,
        "total_params": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mib": baseline,
        "weights_mib": weights / 2**20,  # policy (+ reference model for full fine-tuning)
        "grads_mib": grads / 2**20,
        "adam_state_mib": moments / 2**20,
        "step_s_median": statistics.median(times),
        "updates": updates,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--json")
    parser.add_argument("--mode", choices=["full", "lora"])
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(one(args.model_dir, args.mode, args.updates, args.rank)))
        return
    rows = []
    for mode in ("full", "lora"):
        cmd = [sys.executable, __file__, args.model_dir, "--mode", mode]
        cmd += ["--updates", str(args.updates), "--rank", str(args.rank)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
