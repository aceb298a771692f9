"""scripts/reproduce_signatures.py: every method's overrides make a valid recipe, and the
summary / verdict logic on hand-made metric rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rlvr.config import load_recipe

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sig", REPO / "scripts" / "reproduce_signatures.py")
assert spec is not None and spec.loader is not None
sig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sig)


@pytest.mark.parametrize("method", list(sig.METHODS))
def test_method_overrides_load(method: str) -> None:
    recipe = load_recipe(REPO / "recipes" / "quickstart.yaml", sig.METHODS[method])
    assert method in sig.EXPECTED and recipe.model.path


def test_summary_and_verdicts_by_hand() -> None:
    def rows(acc: list[float], ent: list[float]) -> list[dict]:
        return [{"accuracy": a, "entropy": e} for a, e in zip(acc, ent, strict=True)]

    grpo = [rows([0.2, 0.3, 0.5, 0.6], [0.2, 0.18, 0.15, 0.13])] * 2
    steer = [rows([0.2, 0.3, 0.5, 0.6], [0.2, 0.2, 0.19, 0.19])] * 2
    s = sig.summarise({"grpo": grpo, "steer": steer})
    assert s["grpo"]["entropy"]["first"] == pytest.approx(0.2)  # first quarter = step 1
    assert s["grpo"]["entropy"]["last"] == pytest.approx(0.13)
    assert s["grpo"]["accuracy"]["last_sd"] == 0.0
    assert sig.verdict("grpo", s["grpo"], s["grpo"]) == "shows"
    assert sig.verdict("steer", s["steer"], s["grpo"]) == "shows"
    assert sig.verdict("clip_cov", s["grpo"], s["grpo"]) == "does not show"
