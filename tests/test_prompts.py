"""The one prompt builder (rlvr/data/prompts.py): template, chat template on / off,
``max_prompt_tokens`` truncation (keeps the end), the deprecated ``{problem}`` placeholder, and
that training, the stages and eval build the same prompt from the same settings."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import rlvr.data.prompts as prompts
from rlvr.config import DataConfig
from rlvr.data.prompts import PromptFormatter, chat_prompt_ids, fill_template
from rlvr.data.tiny import build_tokenizer


@pytest.fixture(scope="module")
def tok() -> Any:
    return build_tokenizer()


def _decode(tok: Any, ids: list[int]) -> str:
    return tok.decode(ids, skip_special_tokens=False)


def test_chat_template_on(tok: Any) -> None:
    f = PromptFormatter(tok, template="Q: {prompt}", system_prompt="be brief")
    ex = {"prompt": "1+1?"}
    assert f.messages(ex) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Q: 1+1?"},
    ]
    want = tok.apply_chat_template(f.messages(ex), tokenize=False, add_generation_prompt=True)
    assert f.text(ex) == want and want.startswith("<|im_start|>system")
    assert _decode(tok, f.token_ids(ex)) == want


def test_chat_template_off(tok: Any) -> None:
    ex = {"prompt": "1+1?"}
    f = PromptFormatter(tok, template="Q: {prompt}", use_chat_template=False)
    assert f.text(ex) == "Q: 1+1?"
    g = PromptFormatter(tok, template="{prompt}", system_prompt="sys", use_chat_template=False)
    assert g.text(ex) == "sys\n\n1+1?"
    assert _decode(tok, g.token_ids(ex)) == "sys\n\n1+1?"  # no special tokens added


def test_no_chat_template_is_an_error() -> None:
    bare = build_tokenizer()
    bare.chat_template = None
    with pytest.raises(ValueError, match="data.use_chat_template=false"):
        PromptFormatter(bare)
    assert PromptFormatter(bare, use_chat_template=False).text({"prompt": "x"}) == "x"


def test_max_prompt_tokens_keeps_the_end(tok: Any) -> None:
    ex = {"prompt": "abcdefghijklmnopqrstuvwxyz" * 4}
    full = PromptFormatter(tok, max_prompt_tokens=10_000).token_ids(ex)
    cut = PromptFormatter(tok, max_prompt_tokens=12).token_ids(ex)
    assert len(full) > 12 and cut == full[-12:]  # the generation prompt survives
    assert _decode(tok, cut).endswith("<|im_start|>assistant\n")
    f = PromptFormatter(tok, max_prompt_tokens=12)
    assert f.token_ids_untruncated(ex) == full
    # the same truncation for prompts that already are messages (stages, REDI)
    msgs = f.messages(ex)
    assert chat_prompt_ids(tok, msgs, max_prompt_tokens=12) == cut
    assert chat_prompt_ids(tok, msgs) == full


def test_problem_placeholder_is_deprecated(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    monkeypatch.setattr(prompts, "_warned_deprecated", False)
    with caplog.at_level(logging.WARNING, logger="rlvr"):
        assert fill_template("P: {problem}", "x") == "P: x"
        assert fill_template("P: {problem}!", "y") == "P: y!"
        assert fill_template("P: {prompt}", "z") == "P: z"
    warnings = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 1 and "{prompt}" in warnings[0].getMessage()  # once per process


def test_template_without_placeholder_is_an_error(tok: Any) -> None:
    with pytest.raises(ValueError, match=r"data.prompt_template must contain '\{prompt\}'"):
        PromptFormatter(tok, template="no placeholder")


def test_braces_in_templates_are_kept(tok: Any) -> None:
    f = PromptFormatter(tok, template="{prompt} within \\boxed{}.", use_chat_template=False)
    assert f.text({"prompt": "2+2"}) == "2+2 within \\boxed{}."


def test_training_stage_and_eval_build_the_same_prompt(tok: Any) -> None:
    from eval.runner import build_prompt_text, tokenize_prompt
    from rlvr.stages.common import example_prompt_ids, prompt_messages

    data = DataConfig(prompt_template="Solve: {prompt}", system_prompt="sys", max_prompt_tokens=40)
    ex = {"prompt": "12+30", "answer": "42"}
    train_ids = PromptFormatter.from_data(tok, data).token_ids(ex)
    assert example_prompt_ids(tok, [ex], data) == [train_ids]
    assert chat_prompt_ids(tok, prompt_messages(ex, data), max_prompt_tokens=40) == train_ids
    text = build_prompt_text(tok, "Solve: 12+30", "sys", True)
    assert tokenize_prompt(tok, text, True)[-40:] == train_ids
    raw = DataConfig(prompt_template="Solve: {prompt}", use_chat_template=False)
    assert _decode(tok, example_prompt_ids(tok, [ex], raw)[0]) == "Solve: 12+30"
    assert build_prompt_text(tok, "Solve: 12+30", None, False) == "Solve: 12+30"


def test_redi_prompts_honour_the_builder(tok: Any) -> None:
    """REDI's sequences: chat prompt cut to its last ``max_prompt_len`` tokens; with
    ``use_chat_template=False`` a chat prompt is its raw text (it used to be ``str(list)``)."""
    from rlvr.stages.redi import encode_completions

    msgs = [{"role": "user", "content": "what is 1+1?"}]
    ids, _, target = encode_completions(tok, [msgs], ["2"], max_prompt_len=5)
    prompt = ids[0][target[0] == 0].tolist()
    assert prompt == chat_prompt_ids(tok, msgs)[-5:]
    ids, _, target = encode_completions(tok, [msgs], ["2"], use_chat_template=False)
    assert _decode(tok, ids[0][target[0] == 0].tolist()) == "what is 1+1?"
