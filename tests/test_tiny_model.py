"""The tiny-model factory: a real-size vocabulary option for benchmarks (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.data.tiny import build_tiny_model, build_tokenizer


def test_padded_vocabulary_keeps_text_encoding_and_decodes_fillers() -> None:
    small, big = build_tokenizer(), build_tokenizer(1000)
    assert len(small) == 261 and len(big) == 1000
    text = "12+30 = <think>42</think>"
    # the byte tokens keep their ids; the specials move past the fillers
    assert [i for i in small.encode("12+30 =")] == [i for i in big.encode("12+30 =")]
    assert big.decode(big.encode(text)) == text
    assert big.decode([256, 257]) == "<v0><v1>"
    assert big.convert_tokens_to_ids("<|im_end|>") == 1000 - 3
    with pytest.raises(ValueError, match="vocab_size 100 < 261"):
        build_tokenizer(100)


def test_tiny_model_with_a_padded_vocabulary(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    out = build_tiny_model(tmp_path / "m", hidden_size=64, num_layers=1, num_heads=2,
                           num_kv_heads=1, intermediate_size=128, vocab_size=2048)  # fmt: skip
    assert AutoConfig.from_pretrained(out).vocab_size == 2048
    assert len(AutoTokenizer.from_pretrained(out)) == 2048
