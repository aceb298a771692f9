"""The one prompt builder: an example -> user text -> messages -> prompt text -> token ids.

Training (rlvr/sampler.py), every stage (rlvr/stages/), the stages' judge and the evaluation
harness (eval/runner.py, eval/suites) build their prompts here, so ``use_chat_template``,
``system_prompt`` and ``max_prompt_tokens`` mean the same thing everywhere:

1. user text = the template with ``{prompt}`` replaced by the example's prompt (plain string
   replacement, not ``str.format``, so braces in a template such as ``\\boxed{}`` stay as they
   are). ``{prompt}`` is the placeholder of every user prompt template (``data.prompt_template``,
   eval's ``--prompt-template``); ``{problem}`` is still accepted and logs a deprecation warning
   once per process.
2. messages = ``[system?, user]`` (the system message only when a system prompt is given).
3. prompt text = the tokenizer's chat template over the messages with the generation prompt
   (``use_chat_template``), or the raw text ``system + "\\n\\n" + user``.
4. token ids = the prompt text tokenized; the chat template already holds any BOS, so by default
   no special tokens are added (eval adds them to raw prompts: ``add_special_tokens``). Over
   ``max_prompt_tokens`` the prompt keeps its *last* tokens: the generation prompt must survive.

Templates that are not user prompt templates keep their own placeholders: the judge's
(``{problem}``, ``{answer}``, ``{response}``, rlvr/stages/judge.py) and InT's proposal prompt
(rlvr/stages/intervention.py) are fixed multi-field prompts filled by their modules; they only
go through steps 2-4 here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("rlvr")

PLACEHOLDER = "{prompt}"
DEPRECATED_PLACEHOLDER = "{problem}"
_warned_deprecated = False


def check_template(
    template: str, key: str = "data.prompt_template", *, names: Sequence[str] = ()
) -> None:
    """Raise naming ``key`` when ``template`` has neither ``{prompt}`` nor ``{problem}``;
    ``names``: the registered template names the caller also accepts (eval's), listed in the
    error."""
    if PLACEHOLDER not in template and DEPRECATED_PLACEHOLDER not in template:
        if names:
            raise ValueError(
                f"{key} {template!r} is neither a registered name ({', '.join(names)}) "
                f"nor a string containing '{PLACEHOLDER}'"
            )
        raise ValueError(f"{key} must contain '{PLACEHOLDER}' (got {template!r})")


def fill_template(template: str, prompt: Any) -> str:
    """The user text: ``{prompt}`` in ``template`` replaced by ``prompt``. A template written
    with the old ``{problem}`` placeholder (eval's, before one placeholder was settled on) is
    filled the same way, with a deprecation warning logged once."""
    global _warned_deprecated
    if PLACEHOLDER not in template and DEPRECATED_PLACEHOLDER in template:
        if not _warned_deprecated:
            _warned_deprecated = True
            log.warning(
                "prompt template placeholder '%s' is deprecated: write '%s' (template %r)",
                DEPRECATED_PLACEHOLDER,
                PLACEHOLDER,
                template,
            )
        return template.replace(DEPRECATED_PLACEHOLDER, str(prompt))
    return template.replace(PLACEHOLDER, str(prompt))


def prompt_messages(user: str, system_prompt: str | None = None) -> list[dict]:
    """``[system?, user]`` chat messages (the system message only for a non-empty prompt)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, {"role": "user", "content": user}]


def example_messages(example: dict, template: str, system_prompt: str | None = None) -> list[dict]:
    """The chat prompt of a dataset row: ``[system?, template filled with its prompt]``."""
    return prompt_messages(fill_template(template, example["prompt"]), system_prompt)


def check_chat_template(
    tokenizer: Any,
    hint: str = "set data.use_chat_template=false or use a model whose tokenizer defines one",
) -> None:
    """Raise when ``use_chat_template`` is asked of a tokenizer without a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"the tokenizer has no chat template: {hint}")


def prompt_text(
    tokenizer: Any,
    messages: Sequence[dict],
    *,
    use_chat_template: bool = True,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> str:
    """The prompt text of ``messages``: the chat template with the generation prompt, or the
    raw text (system and user contents joined by a blank line, in order)."""
    if not use_chat_template:
        return "\n\n".join(str(m["content"]) for m in messages)
    return tokenizer.apply_chat_template(
        list(messages),
        tokenize=False,
        add_generation_prompt=True,
        **(chat_template_kwargs or {}),
    )


def encode_prompt(
    tokenizer: Any,
    text: str,
    max_prompt_tokens: int | None = None,
    *,
    add_special_tokens: bool = False,
) -> list[int]:
    """Token ids of a prompt text, keeping the last ``max_prompt_tokens`` when longer."""
    ids = list(tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
    if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
        ids = ids[-max_prompt_tokens:]  # keep the end: the generation prompt must survive
    return ids


def chat_prompt_ids(
    tokenizer: Any,
    messages: str | Sequence[dict],
    *,
    assistant_prefix: str = "",
    use_chat_template: bool = True,
    max_prompt_tokens: int | None = None,
) -> list[int]:
    """Token ids of a chat prompt given as messages (or one user message as a string), plus an
    optional start of the assistant's answer: the path of prompts that are already messages
    (a stage's stored chat prompts, the judge's and InT's fixed prompts)."""
    msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else messages
    text = prompt_text(tokenizer, msgs, use_chat_template=use_chat_template)
    return encode_prompt(tokenizer, text + assistant_prefix, max_prompt_tokens)


class PromptFormatter:
    """``example -> user text -> messages -> prompt text -> token ids`` as configured in a
    recipe's ``data`` section (:meth:`from_data`); ``max_prompt_tokens`` may be lowered after
    construction (the sampler sets the budget the model context leaves)."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        template: str = PLACEHOLDER,
        system_prompt: str | None = None,
        use_chat_template: bool = True,
        max_prompt_tokens: int | None = 512,
    ) -> None:
        check_template(template)
        if use_chat_template:
            check_chat_template(tokenizer)
        self.tokenizer = tokenizer
        self.template = template
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template
        self.max_prompt_tokens = max_prompt_tokens

    @classmethod
    def from_data(cls, tokenizer: Any, data: Any) -> PromptFormatter:
        """The formatter of a :class:`rlvr.config.DataConfig` section."""
        return cls(
            tokenizer,
            template=data.prompt_template,
            system_prompt=data.system_prompt,
            use_chat_template=data.use_chat_template,
            max_prompt_tokens=data.max_prompt_tokens,
        )

    def messages(self, example: dict) -> list[dict]:
        return example_messages(example, self.template, self.system_prompt)

    def text(self, example: dict) -> str:
        return prompt_text(
            self.tokenizer, self.messages(example), use_chat_template=self.use_chat_template
        )

    def token_ids_untruncated(self, example: dict) -> list[int]:
        return encode_prompt(self.tokenizer, self.text(example))

    def token_ids(self, example: dict) -> list[int]:
        return encode_prompt(self.tokenizer, self.text(example), self.max_prompt_tokens)
