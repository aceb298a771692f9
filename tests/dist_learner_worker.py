"""Run by ``torchrun`` from tests/test_distributed.py: one Learner.update per case on a fixed
global batch; rank 0 drives (broadcasts the batch), the others serve.

    torchrun --nproc_per_node 2 tests/dist_learner_worker.py MODEL_DIR OUT_DIR CASES_JSON \
        [fsdp2 | deepspeed]

With ``fsdp2`` the learners are sharded (train.strategy=fsdp2); gradients and weights are
written whole (``full_tensor``). With ``deepspeed`` (ZeRO-2) the gradients live in DeepSpeed's
partitions, not in ``.grad``: the gradient written is empty.

Rank r writes OUT_DIR/rank{r}_{case}.safetensors (pre-step gradient, updated weights) and
OUT_DIR/rank{r}_{case}.json (the update's metrics).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist_cases import case_batch, case_learner  # noqa: E402

from rlvr.distributed import DistEnv, serve  # noqa: E402


def whole(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t  # FSDP2: a collective


def run_case(name: str, case: dict, model_dir: str, out: Path, dist: DistEnv) -> None:
    if dist.loads_together and not dist.is_driver:
        dist.receive()  # rank 0's learner names the weights to load: the same directory here
    learner = case_learner(model_dir, case)
    seen: list[torch.Tensor] = []
    step = learner.optimizer.step

    def record(*args, **kwargs):
        params = [p for p in learner.model.parameters() if p.requires_grad]
        grads = [whole(p.grad).flatten() for p in params if p.grad is not None]
        seen.append(torch.cat(grads) if grads else torch.zeros(0))
        return step(*args, **kwargs)

    learner.optimizer.step = record  # type: ignore[method-assign]
    if dist.is_driver:
        metrics = learner.update(case_batch(case)).metrics
        dist.send({"cmd": "stop"})
    else:
        serve(learner, dist)
        metrics = {}
    weights = torch.cat([whole(p.detach()).flatten() for p in learner.model.parameters()])
    grad = seen[0] if seen else torch.zeros(0)  # no optimizer step: the guard skipped it
    save_file({"grad": grad, "weights": weights}, out / f"rank{dist.rank}_{name}.safetensors")
    (out / f"rank{dist.rank}_{name}.json").write_text(json.dumps(metrics))


def main() -> None:
    model_dir, out, cases = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    strategy = {"train": {"strategy": sys.argv[4]}} if len(sys.argv) > 4 else {}
    recipe = case_learner(model_dir, strategy, build=False)
    dist = DistEnv.setup(recipe)
    for name, case in cases.items():
        run_case(name, case, model_dir, out, dist)
    dist.finish()


if __name__ == "__main__":
    main()
