"""Run by ``torchrun`` from tests/test_fsdp.py: one FSDP2 training step on 2 gloo ranks, then
the FSDP2 checkpoint (rlvr/fsdp.py: DCP directory plus HF export).

    torchrun --nproc_per_node 2 tests/fsdp_worker.py MODEL_DIR OUT_DIR

Rank r trains on rows r, r+W, ... of a fixed batch; its loss is its partial sum of the
one-process token-mean cross-entropy (normalised by the global token count), so the SUM
reduce-scatter gives the one-process gradient. One SGD step (lr 0.1), then
``save_checkpoint(OUT_DIR/ckpt)``; rank 0 also writes OUT_DIR/world.json (world size, the
strategy check, the loss).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as td
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlvr.fsdp import assert_sharded, save_checkpoint, shard_model  # noqa: E402


def fixed_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab, (6, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # ragged rows
    mask[4, 5:] = 0
    return ids, mask


def partial_loss(model, ids, mask, rows) -> torch.Tensor:
    """Sum over ``rows`` of next-token cross-entropy / the whole batch's target count."""
    total = mask[:, 1:].sum()
    logits = model(input_ids=ids[rows], attention_mask=mask[rows]).logits[:, :-1].float()
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ids[rows, 1:].reshape(-1), reduction="none"
    )
    return (ce * mask[rows, 1:].reshape(-1)).sum() / total


def main() -> None:
    model_dir, out = sys.argv[1], Path(sys.argv[2])
    td.init_process_group("gloo")
    rank, world = td.get_rank(), td.get_world_size()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    shard_model(model)
    assert_sharded(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ids, mask = fixed_batch(model.config.vocab_size)
    loss = partial_loss(model, ids, mask, torch.arange(rank, ids.shape[0], world))
    loss.backward()
    optimizer.step()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    save_checkpoint(model, optimizer, out / "ckpt", rank=rank, tokenizer=tokenizer)
    total = loss.detach().clone()
    td.all_reduce(total)
    if rank == 0:
        (out / "world.json").write_text(json.dumps({"world_size": world, "loss": float(total)}))
    td.destroy_process_group()


if __name__ == "__main__":
    main()
