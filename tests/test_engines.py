"""Rollout engines: sampling log-probs agree with the trainer's recomputation (float32),
finish reasons, seeding, and in-memory weight sync into vLLM.

Tolerance: 1e-4 absolute on per-token log-probs (measured: < 1e-6 for HF, ~5e-7 for vLLM CPU).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlvr.policy import token_logprobs
from rlvr.rollout import HFEngine, SamplingParams

TOL = 1e-4


def _prompts(tok) -> list[list[int]]:
    texts = ["12+34=", "7*8=", "hello"]
    return [
        tok(
            tok.apply_chat_template(
                [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
            ),
            add_special_tokens=False,
        )["input_ids"]
        for t in texts
    ]


def _recompute(model, prompt: list[int], completion: list[int], temperature: float) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    mask = torch.zeros_like(ids)
    mask[0, len(prompt) :] = 1
    with torch.no_grad():
        logp, _ = token_logprobs(model, ids, torch.ones_like(ids), mask, temperature=temperature)
    return logp[0, len(prompt) - 1 :]


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_hf_sampling_logprobs_match_recomputation(hf_model, tokenizer, temperature) -> None:
    engine = HFEngine(hf_model, tokenizer)
    prompts = _prompts(tokenizer)
    out = engine.generate(
        prompts, SamplingParams(n=3, temperature=temperature, max_tokens=10, seed=5)
    )
    assert len(out) == 3 and all(len(g) == 3 for g in out)
    for prompt, group in zip(prompts, out, strict=True):
        for c in group:
            assert len(c.logprobs) == len(c.token_ids) > 0
            ref = _recompute(hf_model, prompt, c.token_ids, temperature)
            assert torch.allclose(torch.tensor(c.logprobs), ref, atol=TOL)


def test_hf_seed_reproducible_and_rng_untouched(hf_model, tokenizer) -> None:
    engine = HFEngine(hf_model, tokenizer)
    prompts = _prompts(tokenizer)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = engine.generate(prompts, SamplingParams(n=2, max_tokens=6, seed=11))
    after = torch.rand(1)
    b = engine.generate(prompts, SamplingParams(n=2, max_tokens=6, seed=11))
    c = engine.generate(prompts, SamplingParams(n=2, max_tokens=6, seed=12))
    assert before == after  # generation forks the RNG
    assert [[x.token_ids for x in g] for g in a] == [[x.token_ids for x in g] for g in b]
    assert [[x.token_ids for x in g] for g in a] != [[x.token_ids for x in g] for g in c]


def test_hf_finish_reasons(hf_model, tokenizer) -> None:
    engine = HFEngine(hf_model, tokenizer)
    prompts = _prompts(tokenizer)
    out = engine.generate(prompts, SamplingParams(n=1, max_tokens=4, seed=0))
    assert all(g[0].finish_reason == "length" and len(g[0].token_ids) == 4 for g in out)
    engine.eos_ids = list(range(len(tokenizer)))  # every token ends the completion
    out = engine.generate(prompts, SamplingParams(n=1, max_tokens=4, seed=0))
    assert all(g[0].finish_reason == "stop" and len(g[0].token_ids) == 1 for g in out)


def _reference_generate(model, tok, engine, prompts, sp):
    """The engine's sampling done the old way: ``generate(output_scores=True)`` with the same
    warpers and seed, then log_softmax of each step's processed scores, gathered."""
    from transformers import GenerationConfig, LogitsProcessorList

    from rlvr.rollout.hf import _warpers

    rows = [p for p in prompts for _ in range(sp.n)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), engine.pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, p in enumerate(rows):
        ids[r, width - len(p) :] = torch.tensor(p)
        att[r, width - len(p) :] = 1
    config = GenerationConfig(
        max_new_tokens=sp.max_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
        eos_token_id=engine.eos_ids, pad_token_id=engine.pad_id,
        output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(sp.seed)
        out = model.generate(
            input_ids=ids, attention_mask=att, generation_config=config,
            logits_processor=LogitsProcessorList(_warpers(sp)),
        )  # fmt: skip
    gen = out.sequences[:, width:]
    logp = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)
    logp = logp.gather(-1, gen[..., None]).squeeze(-1)
    result = []
    for r in range(gen.shape[0]):
        tokens = gen[r].tolist()
        end = next((t + 1 for t, x in enumerate(tokens) if x in engine.eos_ids), len(tokens))
        result.append((tokens[:end], logp[r, :end]))
    return result


@pytest.mark.parametrize("chunk", [None, 1, "uneven"])
@pytest.mark.parametrize("temperature,top_k", [(1.0, -1), (0.7, 20)])
def test_hf_outputs_equal_full_score_reference(
    hf_model, tokenizer, monkeypatch, chunk, temperature, top_k
) -> None:
    """The step-wise recorder (chunked log_softmax, vectorized EOS search, batch decode) gives
    the tokens, log-probs (bitwise) and finish reasons of the full-score path."""
    import rlvr.rollout.hf as hf

    vocab = hf_model.config.vocab_size
    if chunk == 1:
        monkeypatch.setattr(hf, "_RECORD_CHUNK_ELEMENTS", 1)  # one row per log_softmax
    elif chunk == "uneven":
        monkeypatch.setattr(hf, "_RECORD_CHUNK_ELEMENTS", 4 * vocab + 3)  # 4 rows, 9 = 4+4+1
    engine = HFEngine(hf_model, tokenizer)
    prompts = _prompts(tokenizer)
    sp = SamplingParams(n=3, temperature=temperature, top_k=top_k, max_tokens=12, seed=3)
    ref = _reference_generate(hf_model, tokenizer, engine, prompts, sp)
    got = [c for group in engine.generate(prompts, sp) for c in group]
    assert len(got) == len(ref) == 9
    assert any(c.finish_reason == "stop" for c in got) or all(len(c.token_ids) == 12 for c in got)
    for c, (tokens, logp) in zip(got, ref, strict=True):
        assert c.token_ids == tokens
        assert torch.equal(torch.tensor(c.logprobs), logp)
        assert c.finish_reason == ("stop" if tokens[-1] in engine.eos_ids else "length")
        assert c.text == tokenizer.decode(tokens, skip_special_tokens=True)


@pytest.mark.vllm
def test_vllm_logprobs_match_and_weight_sync(vllm_engine, hf_model, tokenizer) -> None:
    prompts = _prompts(tokenizer)
    original = {k: v.clone() for k, v in hf_model.state_dict().items()}
    vllm_engine.update_weights(hf_model.state_dict().items())
    sp = SamplingParams(n=2, temperature=0.8, max_tokens=10, seed=3)
    out = vllm_engine.generate(prompts, sp)
    again = vllm_engine.generate(prompts, sp)
    assert [[c.token_ids for c in g] for g in out] == [[c.token_ids for c in g] for g in again]
    for prompt, group in zip(prompts, out, strict=True):
        for c in group:
            ref = _recompute(hf_model, prompt, c.token_ids, 0.8)
            assert torch.allclose(torch.tensor(c.logprobs), ref, atol=TOL)
    # perturb the weights in memory, push them, and check vLLM now samples from the new model
    torch.manual_seed(1)
    try:
        with torch.no_grad():
            for p in hf_model.parameters():
                p.add_(torch.randn_like(p) * 0.5)
        vllm_engine.update_weights(hf_model.state_dict().items())
        new = vllm_engine.generate(prompts, sp)
        assert [[c.token_ids for c in g] for g in new] != [[c.token_ids for c in g] for g in out]
        for prompt, group in zip(prompts, new, strict=True):
            for c in group:
                ref = _recompute(hf_model, prompt, c.token_ids, 0.8)
                assert torch.allclose(torch.tensor(c.logprobs), ref, atol=TOL)
    finally:
        hf_model.load_state_dict(original)
        vllm_engine.update_weights(hf_model.state_dict().items())


@pytest.mark.vllm
def test_vllm_cpu_kv_release_leaves_sampling_unchanged(vllm_engine, tokenizer) -> None:
    """rollout.sleep on CPU (its default): after each rollout the KV cache's pages go back to
    the kernel and the prefix cache is reset; the next rollouts sample exactly as an engine
    whose cache stayed resident."""
    if torch.cuda.is_available():
        pytest.skip("the page release is the CPU path")
    long = tokenizer("12+34=" * 40, add_special_tokens=False)["input_ids"]
    assert len(long) > 128  # a whole KV block on CPU: the prefix cache would reuse it
    prompts = [*_prompts(tokenizer), long]
    sp = SamplingParams(n=3, temperature=0.9, max_tokens=12, seed=21)
    assert vllm_engine.release_kv
    released = vllm_engine.generate(prompts, sp)
    assert vllm_engine.kv_released_bytes > 0.9 * 0.25 * 2**30  # the whole 0.25 GiB cache
    again = vllm_engine.generate(prompts, sp)  # written into zero-filled pages
    vllm_engine.release_kv = False
    try:
        resident = vllm_engine.generate(prompts, sp)
        resident_again = vllm_engine.generate(prompts, sp)  # the prefix cache's blocks reused
    finally:
        vllm_engine.release_kv = True

    def seen(out):
        return [[(c.token_ids, c.logprobs) for c in g] for g in out]

    assert seen(released) == seen(again) == seen(resident) == seen(resident_again)


def test_vllm_rotary_reload_warning_is_filtered(caplog) -> None:
    """vLLM warns "RotaryEmbedding: Failed to load weights" on every in-memory weight sync
    (the rotary cache is a computed buffer); rlvr drops that one message, not others."""
    import logging

    from rlvr.rollout.vllm_engine import _configure_env

    _configure_env()
    logger = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("%s: Failed to load weights", "RotaryEmbedding")
        logger.warning("%s: Failed to load weights", "QKVParallelLinear")
    assert [r.getMessage() for r in caplog.records] == ["QKVParallelLinear: Failed to load weights"]
