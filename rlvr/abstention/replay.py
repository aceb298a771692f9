"""The abstention rules replayed on value traces recorded in a full (never-abstaining) run.

With trace v_0..v_{T−1} (v_t = V̂ before token t was drawn; T tokens in the full run, EOS
included) and threshold c:

- **dynamic** (the paper's rule): abstain at the first t ≥ min_tokens with v_t < c; tokens
  used t + 1 (the forced EOS counts); otherwise answer with T tokens. Under the same seeds the
  gated run is identical to the full run up to t (tested on the hf engine), so this replay
  gives the gate's result at any c from one full run: the curves over c use it, and the eval
  reports the gated run it actually made at the chosen c next to them;
- **never**: always answer (T tokens);
- **pre-generation**: abstain iff v_0 < c (the value at the last prompt token), 0 tokens;
- **post-generation**: abstain iff v_{T−1} < c (the value at the last checked position,
  whose logits drew the final token), all T tokens spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RULES = ("never", "pre_generation", "post_generation", "dynamic")
DEFAULT_GRID = [round(0.05 * i, 2) for i in range(1, 20)]


def apply_rule(
    rule: str, trace: Sequence[float], c: float, min_tokens: int = 0
) -> tuple[bool, int]:
    """(abstained, tokens used) of one sample under ``rule`` at threshold ``c``."""
    T = len(trace)
    if T == 0:
        raise ValueError("apply_rule: empty value trace")
    if rule == "never":
        return False, T
    if rule == "pre_generation":
        return (True, 0) if trace[0] < c else (False, T)
    if rule == "post_generation":
        return trace[-1] < c, T
    if rule == "dynamic":
        for t in range(min_tokens, T):
            if trace[t] < c:
                return True, t + 1
        return False, T
    raise ValueError(f"unknown abstention rule {rule!r}; known: {', '.join(RULES)}")


def rule_metrics(
    rule: str,
    traces: Sequence[Sequence[float]],
    correct: Sequence[bool],
    c: float,
    r_abstain: float,
    min_tokens: int = 0,
) -> dict[str, Any]:
    """:func:`eval.metrics.abstention_metrics` of ``rule`` replayed at ``c``."""
    from eval.metrics import abstention_metrics

    decisions = [apply_rule(rule, t, c, min_tokens) for t in traces]
    return abstention_metrics(
        [a for a, _ in decisions],
        list(correct),
        [n for _, n in decisions],
        tokens_full=[len(t) for t in traces],
        r_abstain=r_abstain,
    )


def curves(
    traces: Sequence[Sequence[float]],
    correct: Sequence[bool],
    grid: Sequence[float] = DEFAULT_GRID,
    min_tokens: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Per rule, one point per c of ``grid``: coverage, selective accuracy, tokens saved and
    utility at r_⊥ = c (a calibrated head's threshold is the abstention reward)."""
    keys = ("coverage", "selective_accuracy", "tokens_saved", "utility", "mean_tokens")
    out: dict[str, list[dict[str, Any]]] = {}
    for rule in RULES:
        pts = []
        for c in grid:
            m = rule_metrics(rule, traces, correct, c, c, min_tokens)
            pts.append({"threshold": c, **{k: m[k] for k in keys}})
        out[rule] = pts
    return out
