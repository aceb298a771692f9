"""Turn dataset rows into prompt token ids: template, optional system prompt, chat template."""

from __future__ import annotations

from typing import Any


class PromptFormatter:
    """``row -> prompt text -> token ids`` as configured in the recipe's ``data`` section."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        template: str = "{prompt}",
        system_prompt: str | None = None,
        use_chat_template: bool = True,
        max_prompt_tokens: int = 512,
    ) -> None:
        if "{prompt}" not in template:
            raise ValueError("data.prompt_template must contain '{prompt}'")
        if use_chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the tokenizer has no chat template: set data.use_chat_template=false "
                "or use a model whose tokenizer defines one"
            )
        self.tokenizer = tokenizer
        self.template = template
        self.system_prompt = system_prompt
        self.use_chat_template = use_chat_template
        self.max_prompt_tokens = max_prompt_tokens

    def text(self, example: dict) -> str:
        user = self.template.replace("{prompt}", str(example["prompt"]))
        if not self.use_chat_template:
            return user if self.system_prompt is None else f"{self.system_prompt}\n\n{user}"
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": user})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def token_ids_untruncated(self, example: dict) -> list[int]:
        return list(self.tokenizer(self.text(example), add_special_tokens=False)["input_ids"])

    def token_ids(self, example: dict) -> list[int]:
        ids = self.tokenizer(self.text(example), add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_prompt_tokens:
            # keep the end: the generation prompt must survive
            ids = ids[-self.max_prompt_tokens :]
        return list(ids)
