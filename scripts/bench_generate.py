"""rlvr's HF rollout engine vs plain ``model.generate``, same model, same samples, one run.

Both sides draw the same completions: plain ``generate`` gets the engine's distribution
(temperature / top-k / top-p as rlvr's warpers, a fresh ``GenerationConfig``) and the same seed,
and the script checks that the tokens are identical, so the only difference is the engine's own
work (recording each sampled token's log-prob, the EOS search, decoding, seeding). The sides
alternate ``--reps`` times and the order flips each repetition, so background load on a shared
machine hits both alike; the ratio is the median over repetitions of engine / plain in the same
repetition, with its min and max, and the load average before and after.

    python scripts/bench_generate.py                          # models/quickstart, batch 256
    python scripts/bench_generate.py --vocab-size 151936      # random tiny model, big vocab
    python scripts/bench_generate.py --with-scores            # + the output_scores path

``--with-scores`` adds a third side: ``generate(output_scores=True)`` then log_softmax over the
stacked [batch, steps, vocab] scores, the engine's method before the step-wise recorder.
``--json PATH`` writes the figures (``ratio`` at the top level).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _inputs(prompts: list[list[int]], n: int, pad_id: int) -> tuple[Any, Any]:
    import torch

    rows = [p for p in prompts for _ in range(n)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, p in enumerate(rows):  # left padding, as the engine does
        ids[r, width - len(p) :] = torch.tensor(p)
        att[r, width - len(p) :] = 1
    return ids, att


def run(args: argparse.Namespace) -> dict:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LogitsProcessorList,
    )

    from rlvr.data import PromptFormatter, arithmetic_examples
    from rlvr.rollout.base import SamplingParams
    from rlvr.rollout.hf import HFEngine, _warpers

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model
    tmp = None
    if args.vocab_size:
        from rlvr.data.tiny import build_tiny_model

        tmp = tempfile.TemporaryDirectory(prefix="bench_generate_")
        model_dir = str(build_tiny_model(Path(tmp.name) / "m", vocab_size=args.vocab_size))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    train, _ = arithmetic_examples(
        digits=2, operations=("+",), num_train=max(args.prompts, 1), num_eval=10, seed=1234
    )
    formatter = PromptFormatter(tok)
    prompts = [formatter.token_ids(e) for e in train[: args.prompts]]
    engine = HFEngine(model, tok, max_batch_size=args.prompts * args.n)
    sp = SamplingParams(
        n=args.n, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        max_tokens=args.max_tokens, seed=args.seed,
    )  # fmt: skip
    ids, att = _inputs(prompts, args.n, engine.pad_id)
    width = ids.shape[1]

    def plain_generate(scores: bool) -> Any:
        config = GenerationConfig(
            max_new_tokens=sp.max_tokens, do_sample=sp.temperature != 0, temperature=1.0,
            top_k=0, top_p=1.0, eos_token_id=engine.eos_ids, pad_token_id=engine.pad_id,
            output_scores=scores, return_dict_in_generate=scores,
        )  # fmt: skip
        warpers = [] if sp.temperature == 0 else _warpers(sp)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(sp.seed)
            return model.generate(
                input_ids=ids, attention_mask=att, generation_config=config,
                logits_processor=LogitsProcessorList(warpers),
            )  # fmt: skip

    def plain() -> list[list[int]]:
        return plain_generate(False)[:, width:].tolist()

    def with_scores() -> list[list[int]]:
        out = plain_generate(True)
        gen = out.sequences[:, width:]
        logp = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)
        logp.gather(-1, gen[..., None])
        return gen.tolist()

    def rlvr() -> list[list[int]]:
        return [c.token_ids for g in engine.generate(prompts, sp) for c in g]

    sides = {"plain": plain, "rlvr": rlvr}
    if args.with_scores:
        sides["scores"] = with_scores
    # same samples: the engine's tokens are plain generate's up to each row's first EOS
    ref, got = plain(), rlvr()
    eos = set(engine.eos_ids)
    for r, (a, b) in enumerate(zip(ref, got, strict=True)):
        end = next((t + 1 for t, x in enumerate(a) if x in eos), len(a))
        if a[:end] != b:
            raise SystemExit(f"row {r}: the engine's tokens differ from plain generate's")
    for f in sides.values():  # warm-up
        f()
    load_before = _load()
    times: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for rep in range(args.reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
    load_after = _load()
    tokens = sum(len(t) for t in got)

    def ratio(side: str) -> dict:
        r = sorted(b / a for a, b in zip(times["plain"], times[side], strict=True))
        return {"median": statistics.median(r), "min": r[0], "max": r[-1], "all": r}

    result = {
        "ratio": ratio("rlvr")["median"],
        "rlvr_over_plain": ratio("rlvr"),
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "times_s": times,
        "load_before": load_before,
        "load_after": load_after,
        "model": args.model if not args.vocab_size else f"tiny random, vocab {args.vocab_size}",
        "vocab_size": model.config.vocab_size,
        "batch": len(prompts) * args.n,
        "max_tokens": args.max_tokens,
        "generated_tokens": tokens,
        "reps": args.reps,
        "threads": torch.get_num_threads(),
    }
    if args.with_scores:
        result["scores_over_plain"] = ratio("scores")
    if tmp is not None:
        tmp.cleanup()
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "quickstart"))
    p.add_argument(
        "--vocab-size", type=int, default=0,
        help="instead of --model: a random tiny Qwen2 (rlvr.data.tiny) with this vocabulary",
    )  # fmt: skip
    p.add_argument("--prompts", type=int, default=32, help="prompts (batch = prompts * n)")
    p.add_argument("--n", type=int, default=8, help="completions per prompt")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=-1)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--with-scores", action="store_true", help="add the output_scores side")
    p.add_argument("--json", default=None, help="write the figures here")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    res = run(args)
    r = res["rlvr_over_plain"]
    print(
        f"batch {res['batch']}, {res['max_tokens']} tokens, vocab {res['vocab_size']}, "
        f"{res['reps']} reps, load {res['load_before']} -> {res['load_after']}"
    )
    for side, t in res["median_s"].items():
        print(f"  {side:7} median {t:.3f} s")
    print(f"  rlvr / plain: {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})")
    if "scores_over_plain" in res:
        s = res["scores_over_plain"]
        print(f"  scores / plain: {s['median']:.3f} (min {s['min']:.3f}, max {s['max']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
