"""The ``rlvr eval`` recipe: one typed section, loaded like a training recipe.

An eval recipe is a YAML file validated against :class:`EvalRecipe` by the same loader as
``rlvr train`` (:func:`rlvr.config.read_tree` / :func:`rlvr.config.validate_tree`): unknown keys
and wrong types stop with the file, the dotted key and, for an unknown key, the closest valid
one; ``key.sub=value`` overrides (YAML scalars) are applied before validation. The command-line
flags of ``rlvr eval`` are top-level keys of the same section (``--max-tokens`` is
``max_tokens``, ``--no-chat-template`` is ``chat_template: false``, ``--keep-thinking`` is
``strip_thinking: false``, ``--score-timeout`` is ``score_timeout_s``).

Precedence: recipe file < dotted overrides < flags. Sampling keys left unset (``None``) take
each suite's default (:meth:`EvalRecipe.sampling_for`). ``suites`` is a list or a
comma-separated string; an item ``NAME=FILE`` also sets ``data_files[NAME]``. Keys may be
written with ``-`` for ``_`` (the flag spelling), and ``score_timeout`` for ``score_timeout_s``.
``backend`` (and the ``--backend`` flag) is the deprecated name of ``engine``: it is read as
``engine`` with a warning, and refused when both are given with different values.

The runner takes this section itself: ``eval.runner.EvalSettings`` is :class:`EvalRecipe`, so
keys, defaults and checks are defined once.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from rlvr.config import RecipeError, Section, renamed_key

if TYPE_CHECKING:
    from eval.suites import Suite

__all__ = ["SUITE_OVERRIDE_KEYS", "EvalRecipe", "normalize_keys", "parse_suites", "require_model"]

SUITE_OVERRIDE_KEYS = ("n", "temperature", "top_p", "top_k", "max_tokens", "prompt_template")
_ALIASES = {"score_timeout": "score_timeout_s"}


def normalize_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys in their field spelling (``max-tokens`` -> ``max_tokens``); when two
    spellings of one key are present, the later one wins."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = str(key).replace("-", "_")
        out[_ALIASES.get(name, name)] = value
    return out


def parse_suites(value: Any) -> tuple[list[str], dict[str, str]]:
    """``"aime24=/x/a.jsonl,ifeval"`` (or a list of such items) -> (names, data files)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names, files = [], {}
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if "=" in item:
            name, path = item.split("=", 1)
            files[name.strip().lower()] = path.strip()
            item = name.strip()
        names.append(item.lower())
    return names, files


class EvalRecipe(Section):
    """Every setting of one eval run; the runner takes this section itself
    (``eval.runner.EvalSettings`` is this class)."""

    model: str = Field(description="Local model directory or Hugging Face model name.")
    suites: list[str] = Field(
        ["aime24", "aime25", "math500"],
        description="Suites to run; 'NAME=FILE' points one suite at a data file.",
    )
    out: str = Field("runs/eval", description="Output directory (resumed when it exists).")
    engine: Literal["vllm", "hf"] = Field(
        "vllm", description="Rollout engine: vllm, or hf (transformers.generate)."
    )
    n: int | None = Field(None, ge=1, description="Samples per problem (None: per suite).")
    temperature: float | None = Field(None, ge=0, description="None: per suite.")
    top_p: float | None = Field(None, gt=0, le=1, description="None: per suite.")
    top_k: int | None = Field(None, description="-1 = off (None: per suite).")
    max_tokens: int | None = Field(None, ge=1, description="New tokens (None: per suite).")
    data_dir: str | None = Field(
        None, description="Benchmark files (None: those shipped in eval/data; 'hub': download)."
    )
    data_files: dict[str, str] = Field({}, description="Suite name -> its data file.")
    limit: int | None = Field(None, ge=1, description="First N problems of each suite.")
    seed: int = 0
    chat_template: bool = Field(True, description="Apply the tokenizer's chat template.")
    system_prompt: str | None = None
    chat_template_kwargs: dict[str, Any] = Field(
        {}, description="Passed to the chat template, e.g. {enable_thinking: false}."
    )
    prompt_template: str | None = Field(
        None, description="Math prompt: a registered name or text with {prompt}."
    )
    strip_thinking: bool = Field(True, description="IF suites score the text after </think>.")
    dtype: str = Field("auto", description="float32 | bfloat16 | float16 | auto")
    max_model_len: int | None = Field(None, ge=1, description="Engine context length.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM on GPU.")
    kv_cache_gib: int = Field(4, ge=1, description="vLLM CPU KV-cache size in GiB.")
    trust_remote_code: bool = False
    chunk_size: int | None = Field(
        None, ge=1, description="Problems per generate call (results saved after each)."
    )
    score_workers: int = Field(2, ge=1, description="Scoring processes.")
    score_timeout_s: float = Field(5.0, gt=0, description="Seconds per scoring call.")
    overwrite: bool = Field(False, description="Discard an earlier run in out.")
    suite_overrides: dict[str, dict[str, Any]] = Field(
        {}, description=f"Per-suite {', '.join(SUITE_OVERRIDE_KEYS)}."
    )
    soft_thinking: bool = Field(False, description="SofT-GRPO soft-thinking decoding (hf).")
    soft_top_k: int = Field(5, ge=1, le=64, description="k: tokens in each soft mixture.")
    soft_top_p: float = Field(0.95, gt=0, le=1, description="Top-p before taking the k ids.")
    soft_tau_g: float = Field(0.1, gt=0, description="Gumbel-softmax temperature.")
    soft_noise_scale: float = Field(1.0, ge=0, description="Gumbel noise scale (0 = off).")
    soft_temperature: float = Field(1.0, gt=0, description="Soft-phase temperature.")
    abstain: str | None = Field(None, description="Value head for dynamic abstention (hf).")
    threshold: float | None = Field(None, description="Abstain when V < c (None: sidecar's).")
    r_abstain: float | None = Field(None, description="Abstention reward r (None: c).")
    abstain_min_tokens: int | None = Field(
        None, ge=0, description="Tokens before the gate may abstain (None: sidecar's, else 0)."
    )

    @model_validator(mode="before")
    @classmethod
    def _spellings_and_implied(cls, value: Any) -> Any:
        """Flag spellings, ``backend`` (the old name of ``engine``, with a deprecation warning),
        ``NAME=FILE`` suites, and ``engine: hf`` where soft thinking or abstention is asked for
        without an engine (both need per-step access, hf only)."""
        if not isinstance(value, dict):
            return value
        tree = renamed_key(normalize_keys(value), "backend", "engine", "eval recipe")
        if isinstance(tree.get("suites"), (str, list, tuple)):
            names, files = parse_suites(tree["suites"])
            tree["suites"] = names
            if files:
                given = tree.get("data_files")
                tree["data_files"] = {**(given if isinstance(given, dict) else {}), **files}
        if (tree.get("soft_thinking") or tree.get("abstain")) and "engine" not in tree:
            tree["engine"] = "hf"
        return tree

    @field_validator("suites")
    @classmethod
    def _some_suites(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("no suites given")
        return value

    @field_validator("suite_overrides")
    @classmethod
    def _override_keys(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for suite, over in value.items():
            for key in over:
                if key not in SUITE_OVERRIDE_KEYS:
                    close = difflib.get_close_matches(key, SUITE_OVERRIDE_KEYS, n=1, cutoff=0.5)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise ValueError(
                        f"suite_overrides.{suite}: unknown key '{key}'{hint}; known: "
                        f"{', '.join(SUITE_OVERRIDE_KEYS)}"
                    )
        return value

    def abstain_gate(self) -> Any:
        """The enforcing gate of ``abstain`` (None without one)."""
        if self.abstain is None:
            return None
        from rlvr.abstention import AbstentionGate
        from rlvr.abstention.head import load_head

        _, meta = load_head(self.abstain)
        min_tokens = self.abstain_min_tokens
        if min_tokens is None:
            min_tokens = int(meta.get("min_tokens") or 0)
        return AbstentionGate.from_file(
            self.abstain, self.threshold, enforce=True, trace=True, min_tokens=min_tokens
        )

    def abstain_identity(self) -> dict[str, Any] | None:
        gate = self.abstain_gate()
        if gate is None:
            return None
        import hashlib

        from rlvr.abstention.head import head_paths

        weights, _ = head_paths(self.abstain or "")
        return {
            "head_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:16],
            "threshold": gate.threshold,
            "min_tokens": gate.min_tokens,
        }

    def soft_params(self) -> Any:
        """The soft-thinking settings, or None for ordinary decoding."""
        if not self.soft_thinking:
            return None
        from rlvr.rollout.soft import SoftThinkingParams

        return SoftThinkingParams(
            top_k=self.soft_top_k,
            top_p=self.soft_top_p,
            tau_g=self.soft_tau_g,
            noise_scale=self.soft_noise_scale,
            temperature=self.soft_temperature,
        )

    def soft_identity(self) -> dict[str, Any] | None:
        params = self.soft_params()
        return None if params is None else dict(vars(params))

    def sampling_for(self, suite: Suite) -> dict[str, Any]:
        """The sampling settings that apply to ``suite`` (override > global > suite default)."""
        d = suite.defaults
        from eval.suites import resolve_template

        over = self.suite_overrides.get(suite.name, {})  # keys checked on validation

        def pick(key: str, default: Any) -> Any:
            if key in over and over[key] is not None:
                return over[key]
            value = getattr(self, key)
            return default if value is None else value

        out = {
            "n": int(pick("n", d.n)),
            "temperature": float(pick("temperature", d.temperature)),
            "top_p": float(pick("top_p", d.top_p)),
            "top_k": int(pick("top_k", d.top_k)),
            "max_tokens": int(pick("max_tokens", d.max_tokens)),
        }
        template = over.get("prompt_template", self.prompt_template)
        out["prompt_template"] = template if template is not None else suite.prompt_template
        out["template_text"] = resolve_template(suite, template)
        if out["n"] < 1:
            raise ValueError(f"{suite.name}: n must be >= 1, got {out['n']}")
        if out["temperature"] < 0:
            raise ValueError(f"{suite.name}: temperature must be >= 0")
        if not 0 < out["top_p"] <= 1:
            raise ValueError(f"{suite.name}: top_p must be in (0, 1]")
        if out["max_tokens"] < 1:
            raise ValueError(f"{suite.name}: max_tokens must be >= 1")
        if out["temperature"] == 0 and out["n"] > 1:
            raise ValueError(
                f"{suite.name}: n={out['n']} samples with temperature 0 are identical; "
                "use n=1 or a temperature > 0 (e.g. --temperature, or suite_overrides in "
                "--config for this suite)"
            )
        return out


def require_model(tree: dict[str, Any]) -> None:
    """The one key without a default, asked for by its flag before anything else is checked."""
    if not tree.get("model"):
        raise RecipeError("--model is required (or 'model:' in the recipe file, or model=PATH)")
