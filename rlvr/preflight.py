"""Checks that need only the recipe and a few small files, run before any model loads.

Everything here reads at most a ``config.json`` and the data file's first bytes, so a mistake
costs a fraction of a second instead of a model load, a warm-up stage or a step:

* ``model.path``: a local directory must exist and hold a ``config.json`` and weights
  (``*.safetensors``); a name that is not a local path must look like a hub id
  (``namespace/name``) and the hub must not be switched off (``HF_HUB_OFFLINE``);
* data files (``data.path``, ``warmup.path``): exist, are files, are not empty;
* engine limits: ``rollout.max_new_tokens`` (and ``eval.max_new_tokens``) leave room for a
  prompt inside the model's context (``max_position_embeddings`` of its ``config.json``, or
  ``rollout.max_model_len``); the longest prompt a step may carry is then
  ``min(data.max_prompt_tokens, context - max_new_tokens)`` (:func:`prompt_token_budget`);
  ``top_k`` is -1 (off) or >= 1 as vLLM accepts; a temperature below 0.01 is raised to 0.01 by
  vLLM, so it is refused;
* degenerate settings are warned about: ``rollout.group_size=1`` with a group-relative
  estimator gives every completion a zero advantage, so nothing trains.

Registry names (estimators, filters, token rules) are checked by the recipe schema itself.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# estimators whose baseline is the other completions of the same prompt: G = 1 trains nothing
GROUP_RELATIVE = frozenset({"grpo", "dr_grpo", "rloo", "qae", "adora"})

# vLLM raises temperatures in (0, 0.01) to 0.01 (vllm.sampling_params._MAX_TEMP)
MIN_SAMPLING_TEMPERATURE = 1e-2


class PreflightError(ValueError):
    """A recipe setting that cannot work, named by its dotted key."""


@dataclass
class PreflightReport:
    warnings: list[str] = field(default_factory=list)
    model_context: int | None = None


def looks_local(path: str) -> bool:
    """True for a path a user means as a directory on disk rather than a hub id
    (``name`` or ``namespace/name``)."""
    return (
        path.startswith(("/", ".", "~")) or path.count("/") > 1 or Path(path).expanduser().exists()
    )


def check_model_path(path: str, key: str = "model.path") -> Path | None:
    """Raise :class:`PreflightError` unless ``path`` is a usable local model directory or a
    plausible hub id with the hub reachable. Returns the local directory (or None for a hub
    id)."""
    p = Path(path).expanduser()
    if p.exists() or looks_local(path):
        if not p.exists():
            raise PreflightError(f"{key}: {path!r} does not exist (relative to {Path.cwd()})")
        if not p.is_dir():
            raise PreflightError(f"{key}: {path!r} is a file, expected a model directory")
        if not any(p.iterdir()):
            raise PreflightError(f"{key}: {path!r} is an empty directory, not a model")
        if not (p / "config.json").is_file():
            raise PreflightError(
                f"{key}: {path!r} has no config.json; expected a Hugging Face model directory "
                "(config.json, *.safetensors, tokenizer files)"
            )
        if not any(p.glob("*.safetensors")):
            raise PreflightError(
                f"{key}: {path!r} has no *.safetensors weights (rlvr loads safetensors only)"
            )
        return p
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"):
        raise PreflightError(
            f"{key}: {path!r} is not a local directory and the Hugging Face hub is off "
            "(HF_HUB_OFFLINE); give the path of a downloaded model"
        )
    return None


def model_context(path: str, max_model_len: int | None = None) -> int | None:
    """The context length the engines will use: ``max_model_len`` when set, else the
    ``max_position_embeddings`` of the model's ``config.json`` (None when unknown)."""
    if max_model_len is not None:
        return max_model_len
    cfg = Path(path).expanduser() / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for node in (data, data.get("text_config") or {}):
        value = node.get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_data_file(path: str, key: str) -> None:
    p = Path(path).expanduser()
    if not p.exists():
        raise PreflightError(f"{key}: data file {path!r} not found (relative to {Path.cwd()})")
    if not p.is_file():
        raise PreflightError(f"{key}: {path!r} is not a file")
    if p.stat().st_size == 0:
        raise PreflightError(f"{key}: data file {path!r} is empty")


def prompt_token_budget(max_prompt_tokens: int, max_new_tokens: int, context: int | None) -> int:
    """The longest prompt (in tokens) that still leaves ``max_new_tokens`` inside ``context``."""
    if context is None:
        return max_prompt_tokens
    return max(0, min(max_prompt_tokens, context - max_new_tokens))


def check_sampling(temperature: float, top_k: int, key: str) -> None:
    if temperature < MIN_SAMPLING_TEMPERATURE:
        raise PreflightError(
            f"{key}.temperature={temperature:g}: below {MIN_SAMPLING_TEMPERATURE:g}, which vLLM "
            "silently raises to 0.01; use a temperature >= 0.01"
        )
    if top_k == 0 or top_k < -1:
        raise PreflightError(f"{key}.top_k={top_k}: use -1 (off) or an integer >= 1")


def check_recipe(recipe: Any) -> PreflightReport:
    """All checks of an RL recipe (:class:`rlvr.config.Recipe`) that need no model load.
    Raises :class:`PreflightError` for settings that cannot work; returns warnings for
    settings that run but are probably not meant."""
    report = PreflightReport()
    m, d, r, e = recipe.model, recipe.data, recipe.rollout, recipe.eval
    check_model_path(m.path)
    if d.source == "file" and d.path:
        check_data_file(d.path, "data.path")
    if recipe.warmup is not None and recipe.warmup.path:
        check_data_file(recipe.warmup.path, "warmup.path")
    check_sampling(r.temperature, r.top_k, "rollout")
    if e.before or e.after:
        check_sampling(e.temperature, r.top_k, "eval")
    ctx = model_context(m.path, r.max_model_len)
    report.model_context = ctx
    if ctx is not None:
        for key, tokens in (
            ("rollout.max_new_tokens", r.max_new_tokens),
            ("eval.max_new_tokens", e.max_new_tokens if (e.before or e.after) else None),
        ):
            if tokens is not None and tokens >= ctx:
                raise PreflightError(
                    f"{key}={tokens}: the model's context is {ctx} tokens "
                    f"({'rollout.max_model_len' if r.max_model_len else 'config.json'}), which "
                    "leaves no room for a prompt; lower it"
                )
    if r.group_size == 1 and recipe.algo.advantage in GROUP_RELATIVE:
        report.warnings.append(
            f"rollout.group_size=1 with algo.advantage={recipe.algo.advantage}: a group-relative "
            "estimator gives every completion a zero advantage, so the policy will not change; "
            "use rollout.group_size >= 2"
        )
    return report
