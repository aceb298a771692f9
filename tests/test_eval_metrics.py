"""eval.metrics against values computed by hand from the definitions."""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import comb

import pytest

from eval import metrics as M
from eval.metrics import pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 11/12
        (4, 1, 1, 0.25),  # pass@1 = c/n
        (16, 4, 1, 0.25),
        (4, 0, 4, 0.0),
        (4, 4, 1, 1.0),
        (4, 2, 3, 1.0),  # n - c = 2 < k: every 3-subset holds a correct sample
        (100, 1, 1, 0.01),
        (3, 1, 2, 1 - 1 / 3),  # subsets {01,02,12}; the one without sample 0 fails
    ],
)
def test_pass_at_k_hand_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_subset_enumeration() -> None:
    # definition: probability that a uniformly random k-subset of the n samples has a success
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                samples = [1] * c + [0] * (n - c)
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_pass_at_k_stable_for_large_n() -> None:
    for n, c, k in [(1000, 10, 100), (2048, 3, 1024), (500, 250, 64)]:
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_int() -> None:
    with pytest.raises(TypeError):
        pass_at_k(4.0, 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pass_at_k(4, True, 1)


def test_avg_at_n_and_mean_pass_at_k() -> None:
    scores = [[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]]
    # per-problem 2/4, 0/4, 3/4 -> mean 5/12
    assert M.avg_at_n(scores) == pytest.approx(5 / 12)
    counts = [(4, 2), (4, 0), (4, 3)]
    # pass@2: 1 - C(2,2)/C(4,2) = 5/6; 0; 1 (n-c=1<2)
    assert M.mean_pass_at_k(counts, 2) == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert M.mean_pass_at_k(counts, 1) == pytest.approx(M.avg_at_n(scores))


def test_standard_error() -> None:
    # values 0, 0.5, 1: sample std = 0.5, se = 0.5 / sqrt(3)
    assert M.standard_error([0.0, 0.5, 1.0]) == pytest.approx(0.5 / 3**0.5)
    assert M.standard_error([0.3]) == 0.0


def test_default_ks() -> None:
    assert M.default_ks(1) == [1]
    assert M.default_ks(4) == [1, 2, 4]
    assert M.default_ks(16) == [1, 2, 4, 8, 16]
    assert M.default_ks(10) == [1, 2, 4, 8, 10]


def test_majority_vote_plurality_ties_and_missing() -> None:
    # classes a,b,a,None -> a wins 2:1; a's first member correct
    assert M.majority_vote(["a", "b", "a", None], [True, False, True, False]) is True
    # tie a:1 b:1 -> first seen (b) wins; b is wrong
    assert M.majority_vote(["b", "a"], [False, True]) is False
    # unanswered samples do not vote: b (1 vote) beats nothing
    # empty predictions vote as one never-correct class (Qwen2.5-Math's Counter over preds)
    assert M.majority_vote([None, None, "b"], [False, False, True]) is False
    assert M.majority_vote([None, "b", "b"], [False, True, True]) is True
    assert M.majority_vote([None, "b"], [False, True]) is False  # tie: first seen
    assert M.majority_vote(["b", None], [True, False]) is True
    assert M.majority_vote([None, None], [False, False]) is False
    # the other reading: empty samples abstain
    assert M.majority_vote([None, None, "b"], [False, False, True], empty_votes=False) is True
    assert M.majority_vote([None, None], [False, False], empty_votes=False) is False


def test_k_larger_than_n_raises_and_means_are_thresholded() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        M.pass_at_k(2, 0, 3)  # the Codex shortcut would say 1.0 here
    with pytest.raises(ValueError, match="samples < k"):
        M.maj_at_k([["a", "a"]], [[True, True]], 3)
    with pytest.raises(ValueError):
        M.maj_at_k([["a"]], [[True]], 0)
    # avg@n counts score > 0.5 as correct: partial credit 0.7 -> 1, 0.5 -> 0 (not 0.6 raw)
    assert M.avg_at_n([[0.7, 0.5]]) == 0.5
    assert M.avg_at_n([[1.0, 0.0], [0.51, 0.49]]) == 0.5


def test_maj_at_k_uses_first_k_samples() -> None:
    classes = [[0, 1, 1, 1], [0, 0, 1, 2]]
    correct = [[True, False, False, False], [False, False, True, False]]
    # k=1: problem 1 right (class 0 correct), problem 2 wrong -> 0.5
    assert M.maj_at_k(classes, correct, 1) == 0.5
    # k=2: p1 tie 0 vs 1 -> first seen 0 (correct); p2 class 0 wins (wrong) -> 0.5
    assert M.maj_at_k(classes, correct, 2) == 0.5
    # k=4: p1 class 1 wins 3:1 (wrong); p2 class 0 wins (wrong) -> 0
    assert M.maj_at_k(classes, correct, 4) == 0.0
    with pytest.raises(ValueError):
        M.maj_at_k(classes, correct, 5)


def test_length_stats() -> None:
    s = M.length_stats([10, 20, 30, 100], ["stop", "stop", "length", "stop"])
    assert s == {
        "mean_tokens": 40.0,
        "median_tokens": 25.0,
        "max_tokens": 100,
        "truncation_rate": 0.25,
    }


def test_if_accuracy_pools_instructions() -> None:
    strict = [[True, False], [True], [False, False, True]]
    loose = [[True, True], [True], [False, True, True]]
    out = M.if_accuracy(strict, loose)
    assert out["prompt_level_strict"] == pytest.approx(1 / 3)
    assert out["inst_level_strict"] == pytest.approx(3 / 6)  # pooled, not per-prompt mean
    assert out["prompt_level_loose"] == pytest.approx(2 / 3)
    assert out["inst_level_loose"] == pytest.approx(5 / 6)


def test_abstention_metrics_hand_vector() -> None:
    from eval.metrics import abstention_metrics

    # 5 samples: answered correct, answered wrong, abstained (would be wrong), abstained
    # (would be right), answered correct
    m = abstention_metrics(
        [False, False, True, True, False],
        [True, False, False, True, True],
        [10, 20, 3, 5, 12],
        tokens_full=[10, 20, 30, 40, 12],
        r_abstain=0.25,
    )
    assert m["coverage"] == pytest.approx(3 / 5)
    assert m["selective_accuracy"] == pytest.approx(2 / 3)
    assert m["tokens_saved"] == pytest.approx(1 - 50 / 112)
    assert m["utility"] == pytest.approx((2 + 0.25 * 2) / 5)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["abstentions"] == 2 and m["tokens_used"] == 50 and m["tokens_full"] == 112
    assert m["mean_tokens_per_abstention"] == pytest.approx(4.0)
    assert m["abstention_precision"] == pytest.approx(1 / 2)
    bare = abstention_metrics([True, True], [None, None], [1, 2])
    assert bare["coverage"] == 0 and bare["selective_accuracy"] is None
    assert bare["tokens_saved"] is None and bare["utility"] == 0.0
    assert bare["abstention_precision"] is None
    with pytest.raises(ValueError, match="answered but correct is None"):
        abstention_metrics([False], [None], [1])
    with pytest.raises(ValueError, match="differ in length"):
        abstention_metrics([False, True], [True], [1, 2])
