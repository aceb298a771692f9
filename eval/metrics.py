"""Evaluation metrics over n sampled completions per problem.

Notation: a suite has N problems; problem i has n_i samples of which c_i are correct
(a sample is correct when its score is > 0.5; every scorer used here returns 0 or 1).

* **avg@n** (= mean@n = pass@1 as reported by DeepSeek-R1 / Qwen3 / lighteval):
  ``avg@n = (1/N) * sum_i c_i / n_i``.  Its standard error is taken across problems:
  ``stderr = std_i(c_i / n_i, ddof=1) / sqrt(N)``.
* **pass@k** (unbiased estimator, Chen et al. 2021, "Evaluating Large Language Models
  Trained on Code", the Codex paper): ``pass@k = 1 - C(n-c, k) / C(n, k)``, evaluated
  without large binomials as ``1 - prod_{j=n-c+1}^{n} (1 - k / j)`` and equal to 1 when
  ``n - c < k``.  The suite value is the mean over problems.  pass@1 = c / n exactly.
* **maj@k** (majority vote / cons@k, DeepSeek-R1 report; Qwen2.5-Math ``rm_maj_eval.py``):
  the first k samples of a problem vote with their extracted answers, grouped into
  equivalence classes (math-verify equivalence for math; see ``eval.scoring``); ties go to
  the class seen first.  The problem counts as solved iff the winning class is correct.
  *Empty predictions vote*: samples without an extracted answer form one "no answer" class,
  which is never correct (Qwen2.5-Math ``rm_maj_eval.py`` counts the empty string in its
  ``Counter`` the same way), so 3 empty samples out-vote 1 correct one; ``empty_votes=False``
  gives the other reading (empty samples abstain).  The first-k rule follows
  lm-evaluation-harness ``take_first_k``.
* **k > n** raises ``ValueError`` for pass@k and maj@k.  (The Codex estimator's shortcut
  ``n - c < k -> 1.0`` returns 1.0 for k > n even with c = 0, which lighteval reports; a
  pass@k needs at least k samples, so rlvr refuses it.)
* **Thresholded means**: avg@n, pass@k and maj@k count a sample as correct when its score
  is > 0.5 (:data:`CORRECT_THRESHOLD`); the mean of raw scores is not used.  The math and IF
  scorers return 0 or 1, so both readings agree for them; a custom scorer returning partial
  credit (0.7) counts as correct, not as 0.7.
* **Length statistics**: mean / median / max of generated tokens per sample, and the
  truncation rate = share of samples whose ``finish_reason == "length"``.
* **Instruction following** (IFEval, Zhou et al. 2023, google-research
  ``instruction_following_eval/evaluation_lib.py``; allenai/IFBench ``evaluation_lib.py``):
  prompt-level accuracy = share of responses whose instructions all pass; instruction-level
  accuracy = (sum of passed instructions) / (sum of instructions), pooled over all
  instructions (lm-eval ``agg_inst_level_acc``), each in a strict and a loose variant.
  With n > 1 responses per prompt, every response counts as one prompt-level trial.
* **Selective prediction under abstention** (dynamic abstention, "Knowing When to Quit",
  arXiv 2604.18419; rlvr spec §8.5), per sample i: abstained a_i, correct-if-answered y_i,
  tokens used T_i, tokens of the same seed without abstention T_full,i:
  coverage = mean(1 − a); selective accuracy = Σ(1 − a)·y / Σ(1 − a) (the paper's headline);
  tokens saved = 1 − ΣT / ΣT_full; utility J = mean[(1 − a)·y + a·r_⊥] (the objective the rule
  maximises); abstention precision = share of abstained samples that would have been wrong.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Sequence

__all__ = [
    "CORRECT_THRESHOLD",
    "abstention_metrics",
    "avg_at_n",
    "default_ks",
    "if_accuracy",
    "is_correct",
    "length_stats",
    "maj_at_k",
    "majority_vote",
    "mean_pass_at_k",
    "pass_at_k",
    "standard_error",
]

CORRECT_THRESHOLD = 0.5


def is_correct(score: float) -> bool:
    """A sample is correct when its score exceeds 0.5 (scorers return 0.0 or 1.0)."""
    return score > CORRECT_THRESHOLD


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{j=n-c+1}^{n} (1 - k/j)`` (no factorials, no overflow); returns 1.0
    when every size-k subset must contain a correct sample (``n - c < k``).
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"pass_at_k: {name} must be an int, got {value!r}")
    if n < 1:
        raise ValueError(f"pass_at_k: n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for j in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / j
    return 1.0 - prob_all_wrong


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of ``pass_at_k(n_i, c_i, k)`` over problems given ``(n_i, c_i)`` pairs."""
    if not counts:
        raise ValueError("mean_pass_at_k: no problems")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def avg_at_n(scores: Sequence[Sequence[float]]) -> float:
    """avg@n: mean over problems of the per-problem mean correctness of its samples."""
    if not scores:
        raise ValueError("avg_at_n: no problems")
    per_problem = []
    for i, row in enumerate(scores):
        if not row:
            raise ValueError(f"avg_at_n: problem {i} has no samples")
        per_problem.append(sum(is_correct(s) for s in row) / len(row))
    return sum(per_problem) / len(per_problem)


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean: ``std(values, ddof=1) / sqrt(len(values))`` (0 if len < 2)."""
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / math.sqrt(len(values))


def default_ks(n: int) -> list[int]:
    """k values reported for n samples: 1, 2, 4, ... (powers of two <= n), plus n itself."""
    if n < 1:
        raise ValueError(f"default_ks: n must be >= 1, got {n}")
    ks = []
    k = 1
    while k <= n:
        ks.append(k)
        k *= 2
    if ks[-1] != n:
        ks.append(n)
    return ks


_NO_ANSWER = ("no answer",)  # the class of samples without an extracted answer


def majority_vote(
    classes: Sequence[Hashable | None], correct: Sequence[bool], *, empty_votes: bool = True
) -> bool:
    """True iff the plurality answer class is correct.

    ``classes[j]`` is the equivalence class of sample j's extracted answer (None: no answer;
    with ``empty_votes`` these form one class that is never correct, else they abstain);
    ``correct[j]`` its correctness.  Ties break towards the class seen first.  A class's
    correctness is that of its first member (members are equivalent answers).
    """
    if len(classes) != len(correct):
        raise ValueError("majority_vote: classes and correct differ in length")
    votes: dict[Hashable, int] = {}
    first_correct: dict[Hashable, bool] = {}
    for cls, ok in zip(classes, correct, strict=True):
        if cls is None:
            if not empty_votes:
                continue
            cls, ok = _NO_ANSWER, False
        if cls not in votes:
            votes[cls] = 0
            first_correct[cls] = bool(ok)
        votes[cls] += 1
    if not votes:
        return False
    best = max(votes.values())
    winner = next(cls for cls, v in votes.items() if v == best)  # dicts keep insertion order
    return first_correct[winner]


def maj_at_k(
    classes: Sequence[Sequence[Hashable | None]],
    correct: Sequence[Sequence[bool]],
    k: int,
    *,
    empty_votes: bool = True,
) -> float:
    """maj@k over problems: majority vote among each problem's first k samples, averaged."""
    if not classes:
        raise ValueError("maj_at_k: no problems")
    if k < 1:
        raise ValueError(f"maj_at_k: k must be >= 1, got {k}")
    total = 0
    for i, (cls_row, ok_row) in enumerate(zip(classes, correct, strict=True)):
        if len(cls_row) < k:
            raise ValueError(f"maj_at_k: problem {i} has {len(cls_row)} samples < k={k}")
        total += majority_vote(cls_row[:k], ok_row[:k], empty_votes=empty_votes)
    return total / len(classes)


def length_stats(num_tokens: Sequence[int], finish_reasons: Sequence[str]) -> dict[str, float]:
    """Mean / median / max response length in tokens and the truncation rate."""
    if len(num_tokens) != len(finish_reasons):
        raise ValueError("length_stats: num_tokens and finish_reasons differ in length")
    if not num_tokens:
        return {"mean_tokens": 0.0, "median_tokens": 0.0, "max_tokens": 0, "truncation_rate": 0.0}
    return {
        "mean_tokens": sum(num_tokens) / len(num_tokens),
        "median_tokens": float(statistics.median(num_tokens)),
        "max_tokens": max(num_tokens),
        "truncation_rate": sum(r == "length" for r in finish_reasons) / len(finish_reasons),
    }


def if_accuracy(
    strict: Sequence[Sequence[bool]], loose: Sequence[Sequence[bool]]
) -> dict[str, float]:
    """Prompt- and instruction-level accuracy, strict and loose, from per-response verdicts.

    ``strict[r]`` / ``loose[r]`` hold the per-instruction verdicts of response r.
    """
    if len(strict) != len(loose):
        raise ValueError("if_accuracy: strict and loose differ in length")
    if not strict:
        raise ValueError("if_accuracy: no responses")
    out: dict[str, float] = {}
    for name, rows in (("strict", strict), ("loose", loose)):
        n_inst = sum(len(r) for r in rows)
        out[f"prompt_level_{name}"] = sum(all(r) for r in rows) / len(rows)
        out[f"inst_level_{name}"] = sum(sum(r) for r in rows) / n_inst if n_inst else 0.0
    return out


def abstention_metrics(
    abstained: Sequence[bool],
    correct: Sequence[bool | None],
    tokens: Sequence[int],
    tokens_full: Sequence[int] | None = None,
    r_abstain: float = 0.0,
) -> dict[str, float | int | None]:
    """Selective-prediction metrics of one run (definitions in the module docstring).

    ``correct[i]`` is whether sample i's answer is (or, for an abstained sample, would have
    been: the paired full run's verdict) correct; an abstained sample may have ``None`` (not
    known), which only leaves ``abstention_precision`` undefined. Returns ``coverage``,
    ``selective_accuracy`` (None when nothing was answered), ``tokens_saved`` (None without
    ``tokens_full``), ``utility`` (at ``r_abstain``), and ``n``, ``abstentions``,
    ``accuracy`` (answered and correct, over all samples), ``tokens_used``, ``tokens_full``,
    ``mean_tokens``, ``mean_tokens_per_abstention``, ``abstention_precision``.
    """
    n = len(abstained)
    if n == 0:
        raise ValueError("abstention_metrics: no samples")
    if len(correct) != n or len(tokens) != n:
        raise ValueError(
            f"abstention_metrics: abstained, correct, tokens differ in length "
            f"({n}, {len(correct)}, {len(tokens)})"
        )
    if tokens_full is not None and len(tokens_full) != n:
        raise ValueError(f"abstention_metrics: tokens_full has {len(tokens_full)} entries, not {n}")
    a = [bool(x) for x in abstained]
    for i, (ai, yi) in enumerate(zip(a, correct, strict=True)):
        if yi is None and not ai:
            raise ValueError(f"abstention_metrics: sample {i} was answered but correct is None")
    answered = n - sum(a)
    hits = sum(1 for ai, yi in zip(a, correct, strict=True) if not ai and yi)
    abst_y = [yi for ai, yi in zip(a, correct, strict=True) if ai]
    used = sum(int(t) for t in tokens)
    full = sum(int(t) for t in tokens_full) if tokens_full is not None else None
    abst_tokens = [int(t) for ai, t in zip(a, tokens, strict=True) if ai]
    return {
        "coverage": answered / n,
        "selective_accuracy": hits / answered if answered else None,
        "tokens_saved": (1.0 - used / full) if full else (0.0 if full == 0 else None),
        "utility": (hits + r_abstain * (n - answered)) / n,
        "n": n,
        "abstentions": n - answered,
        "accuracy": hits / n,
        "tokens_used": used,
        "tokens_full": full,
        "mean_tokens": used / n,
        "mean_tokens_per_abstention": sum(abst_tokens) / len(abst_tokens) if abst_tokens else None,
        "abstention_precision": (
            sum(1 for y in abst_y if not y) / len(abst_y)
            if abst_y and all(y is not None for y in abst_y)
            else None
        ),
    }
