"""Tiny Qwen2-architecture causal LMs with an offline byte-level tokenizer.

Used by tests and the quickstart: everything is built from a config, nothing is downloaded.
The tokenizer is byte-level BPE with no merges (every UTF-8 byte is one token, so each digit
is one token), plus Qwen-style chat special tokens and ``<think>``/``</think>`` (added tokens
that are not special, as in Qwen3, so decoded completions keep them). Its chat
template is the ChatML layout Qwen models use. head_dim is 32 or more because vLLM's CPU
attention rejects 16.

``vocab_size`` pads the vocabulary to a real model's size (Qwen2.5: 151,936) with filler entries
``<v0>``, ``<v1>``, ... that text never encodes to (the BPE has no merges) but that decode, so a
random model that samples them still decodes: the embedding and the LM head then cost what they
cost in a real-size model (benchmarks, memory checks).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# added but not special, as in Qwen3's tokenizer: decoding (skip_special_tokens) keeps them
THINK_TOKENS = ["<think>", "</think>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(vocab_size: int | None = None) -> PreTrainedTokenizerFast:
    """Byte-level tokenizer (256 byte tokens + specials) with a ChatML chat template; with
    ``vocab_size``, padded with filler tokens to exactly that many ids."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    extra = len(SPECIAL_TOKENS) + len(THINK_TOKENS)
    if vocab_size is not None:
        if vocab_size < len(vocab) + extra:
            raise ValueError(f"vocab_size {vocab_size} < {len(vocab) + extra} (bytes + specials)")
        base = len(vocab)
        vocab.update({f"<v{i}>": base + i for i in range(vocab_size - extra - base)})
    bpe = models.BPE(vocab=vocab, merges=[], unk_token=None)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def tiny_config(
    vocab_size: int,
    *,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 512,
    max_position_embeddings: int = 512,
    eos_token_id: int = 0,
    pad_token_id: int = 0,
) -> Qwen2Config:
    if hidden_size // num_heads < 32:
        raise ValueError(
            f"head_dim {hidden_size // num_heads} < 32: vLLM's CPU attention needs 32 or 64"
        )
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 512,
    max_position_embeddings: int = 512,
    vocab_size: int | None = None,
) -> Path:
    """Build a randomly initialised tiny Qwen2 model and its tokenizer into ``out_dir``
    (``vocab_size``: pad the vocabulary to that many ids, see the module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = tiny_config(
        len(tokenizer),
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = None
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
