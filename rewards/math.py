"""Math answer reward: extract the final answer, then compare it with the reference.

    math_reward(completion, answer) = 1.0 if extract(completion) == answer else 0.0

Extraction (first that applies, on the text after the last ``</think>``; a completion that
opens ``<think>`` and never closes it scores 0, as TRL's ``reasoning_accuracy_reward``):

1. the last complete ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces; Hendrycks MATH
   ``last_boxed_only_string`` convention, also the ``\\boxed 42`` form),
2. the last ``<answer>...</answer>`` block (a box inside it wins),
3. "final answer is X" / "final answer: X" (Minerva form, cut at "I hope it is correct"),
4. opt-in: the last number in the text (``last_number_fallback=True``).

Comparison: integer references are compared exactly (integer strings by value; parsed numbers
by exact rational arithmetic), so ``10^{20}`` never equals ``10^{20}+1``. Other references
use math-verify (huggingface/Math-Verify, read at v0.8/0.9): ``verify(gold, pred)`` with the
gold first (the function is asymmetric), the gold wrapped in ``\\boxed{}`` before parsing
(Skywork-OR1's finding), brace-free macro arguments braced on both sides as TeX reads them
(``\\frac12`` = ``\\frac{1}{2}``, ``\\frac123`` = ``\\frac{1}{2}3``, ``\\sqrt2`` = ``\\sqrt{2}``),
LaTeX extraction only for the prediction (math-verify's expression extractor calls sympy
``parse_expr``, i.e. ``eval``; model output never reaches it), and a normalised string
equality fallback for non-mathematical answers ("B", "yes").

Hostile outputs are cut before parsing: candidates longer than ``max_answer_chars``, nesting
deeper than 30, exponent towers (``a^b^c``, ``(a^b)^c``), exponents above 10^5 or powers of
more than 2*10^5 digits, factorials of large or compound arguments, huge binomials, and
sums / products / integrals / limits with numbers above 20 score 0 without reaching sympy. math-verify's own
``signal.alarm`` time-outs are switched off (they only work in a main thread); the reward
runner enforces a hard wall-clock limit per call in its worker processes. ``math_reward``
never raises for any ``str`` input (lone surrogates and NULs included).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import math_verify
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig
from math_verify.parser import NormalizationConfig

from rewards.base import register_reward

__all__ = [
    "math_reward",
    "math_accuracy",
    "extract_answer",
    "last_boxed",
    "answer_region",
    "is_hostile",
    "normalize_answer",
    "warmup",
]

logging.getLogger("math_verify").setLevel(logging.ERROR)  # silence "timeout disabled" notices

MAX_NESTING = 30
MAX_EXPONENT = 100_000
MAX_POWER_DIGITS = 200_000  # digits of base * exponent allowed for one literal power
MAX_FACTORIAL = 2_000
MAX_TAIL_CHARS = 50_000

_BOX_TOKENS = ("\\boxed", "\\fbox")
_BIG_OPERATOR = re.compile(r"\\(?:sum|prod|int|iint|iiint|oint|lim|bigcup|bigcap)(?![A-Za-z])")


class _MathTimeout(BaseException):
    """Raised by the optional main-thread deadline of :func:`math_reward`."""


# ---------------------------------------------------------------------------------------------
# text handling
# ---------------------------------------------------------------------------------------------


def _sanitize(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    # lone surrogates and other unencodable code points become "?"; NULs are dropped
    return text.encode("utf-8", "replace").decode("utf-8", "replace").replace("\x00", "")


def answer_region(text: str) -> str | None:
    """Text after the last ``</think>``; None if a ``<think>`` is opened and never closed."""
    close = text.rfind("</think>")
    if close >= 0:
        return text[close + len("</think>") :]
    if "<think>" in text:
        return None
    return text


def balanced_group(text: str, start: int, limit: int) -> str | None:
    """Content of the ``{...}`` group opening at ``text[start]``, or None if unbalanced."""
    depth = 0
    end = min(len(text), start + limit + 2)
    for i in range(start, end):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def last_boxed(text: str, max_chars: int = 10_000) -> str | None:
    """Content of the last complete ``\\boxed{}`` / ``\\fbox{}`` (or ``\\boxed x``) in ``text``."""
    pos = len(text)
    for _ in range(64):  # walk back over incomplete boxes, bounded
        idx = max(text.rfind(tok, 0, pos) for tok in _BOX_TOKENS)
        if idx < 0:
            return None
        tok = "\\boxed" if text.startswith("\\boxed", idx) else "\\fbox"
        j = idx + len(tok)
        if j < len(text) and text[j] == " ":
            m = re.match(r" +([^\s$]{1,%d})" % max_chars, text[j:])  # noqa: UP031
            if m:
                return m.group(1)
        k = j
        while k < len(text) and k < j + 8 and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "{":
            inner = balanced_group(text, k, max_chars)
            if inner is not None:
                return inner
        pos = idx
    return None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FINAL_ANSWER = re.compile(r"final\s+answer\s*(?:is|:)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def extract_answer(
    completion: str, *, last_number_fallback: bool = False, max_chars: int = 10_000
) -> str | None:
    """The final answer string of a completion (see module docstring), or None."""
    text = _sanitize(completion)
    region = answer_region(text)
    if region is None:
        return None
    region = region[-MAX_TAIL_CHARS:]
    boxed = last_boxed(region, max_chars)
    if boxed is not None:
        return boxed
    start = region.rfind("<answer>")
    if start >= 0:
        m = _ANSWER_TAG.match(region, start)
        if m:
            return m.group(1).strip()
    found = None
    for m_final in _FINAL_ANSWER.finditer(region):
        found = m_final
    if found is not None:
        rest = region[found.end() : found.end() + max_chars]
        rest = re.split(r"I hope it is correct|\n", rest, maxsplit=1)[0].strip()
        rest = rest.strip().rstrip(".").strip().strip("$").strip()
        if rest:
            return rest
    if last_number_fallback:
        last = None
        for m_num in _NUMBER.finditer(region):
            last = m_num
        if last is not None:
            return last.group(0).rstrip(",")
    return None


# ---------------------------------------------------------------------------------------------
# guards against pathological candidates (cheap, before sympy sees anything)
# ---------------------------------------------------------------------------------------------


def _exponent_span(s: str, i: int) -> tuple[str, int]:
    """Exponent text after the ``^`` at ``s[i]`` and the index just past it."""
    j = i + 1
    while j < len(s) and s[j] == " ":
        j += 1
    if j < len(s) and s[j] == "{":
        inner = balanced_group(s, j, len(s))
        if inner is None:
            return s[j:], len(s)
        return inner, j + len(inner) + 2
    if j < len(s) and s[j] == "(":
        depth, k = 0, j
        while k < len(s):
            depth += s[k] == "("
            depth -= s[k] == ")"
            k += 1
            if depth == 0:
                break
        return s[j:k], k
    m = re.match(r"\d+|\\?[A-Za-z]+|.", s[j:])
    tok = m.group(0) if m else ""
    return tok, j + len(tok)


def _base_span(s: str, i: int) -> str:
    """Text of the base of the ``^`` at ``s[i]`` (a bracketed group or the trailing token)."""
    j = i - 1
    while j >= 0 and s[j] == " ":
        j -= 1
    if j < 0:
        return ""
    close = s[j]
    if close in ")}]":
        opening = {")": "(", "}": "{", "]": "["}[close]
        depth = 0
        for k in range(j, -1, -1):
            if s[k] == close:
                depth += 1
            elif s[k] == opening:
                depth -= 1
                if depth == 0:
                    return s[k : j + 1]
        return s[: j + 1]
    m = re.search(r"(\d+(?:\.\d+)?|\\?[A-Za-z]+)$", s[: j + 1])
    return m.group(1) if m else s[j]


def _too_big_int(tok: str, limit: int) -> bool:
    digits = re.sub(r"[\s{}()]", "", tok).lstrip("+-")
    if not digits.isdigit():
        return False
    return len(digits) > len(str(limit)) or int(digits) > limit


def is_hostile(candidate: str, max_chars: int = 1000) -> bool:
    """True for candidates that could make sympy run for a long time (scored 0 unparsed)."""
    if len(candidate) > max_chars:
        return True
    depth = best = 0
    for c in candidate:
        if c in "{([":
            depth += 1
            best = max(best, depth)
        elif c in "})]":
            depth -= 1
    if best > MAX_NESTING:
        return True
    s = candidate.replace("**", "^").replace("\\uparrow", "^")
    if s.count("^") > 12:
        return True
    for m in re.finditer(r"\^", s):
        exp, end = _exponent_span(s, m.start())
        if "^" in exp or "!" in exp or "\\exp" in exp:
            return True  # tower
        if _too_big_int(exp, MAX_EXPONENT):
            return True
        rest = s[end:].lstrip()
        if rest.startswith("^"):
            return True  # a^b^c
        base = _base_span(s, m.start())
        if "^" in base or "!" in base:
            return True  # (a^b)^c
        exp_digits = re.sub(r"[\s{}()+]", "", exp)
        if exp_digits.isdigit():
            base_digits = sum(len(d) for d in re.findall(r"\d+", base)) or 1
            if base_digits * int(exp_digits) > MAX_POWER_DIGITS:
                return True  # the power alone would have too many digits
    if _BIG_OPERATOR.search(s) and any(len(d) > 2 or int(d) > 20 for d in re.findall(r"\d+", s)):
        return True  # sums / products / integrals / limits with large bounds or powers
    for m in re.finditer(r"!", s):
        before = s[: m.start()].rstrip()
        if not before:
            continue
        if before[-1] in ")}]!":
            return True
        num = re.search(r"(\d+)$", before)
        if num and _too_big_int(num.group(1), MAX_FACTORIAL):
            return True
    if "binom" in s or "choose" in s or "Gamma" in s:
        if any(len(d) > 6 for d in re.findall(r"\d+", s)):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# normalisation and comparison
# ---------------------------------------------------------------------------------------------

_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_INT = re.compile(r"[+-]?\d+")
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+")


def normalize_answer(s: str) -> str:
    s = s.strip()
    for _ in range(3):
        s = _TEXT_WRAP.sub(r"\1", s)
    for tok in ("\\left", "\\right", "\\displaystyle", "\\!", "\\,", "\\;", "\\:", "\\ ", "$"):
        s = s.replace(tok, "")
    s = s.replace("{,}", ",").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.replace("\\%", "").rstrip("%")  # percentages compare by their number (Hendrycks)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


_SHORTHAND_OP = re.compile(r"\\(?:[dt]?frac|sqrt)(?![A-Za-z])")
_ARG_TOKEN = re.compile(r"\s*(?:(\{)|(\\[A-Za-z]+|[A-Za-z0-9]))")
_ROOT_INDEX = re.compile(r"\s*\[[^\[\]{}]{1,20}\]")


def _expand_shorthand(s: str) -> str:
    """Brace the brace-free arguments of ``\\frac`` / ``\\dfrac`` / ``\\tfrac`` / ``\\sqrt``.

    TeX takes one token as an undelimited argument, so ``\\frac123`` is ``\\frac{1}{2}3`` and
    ``\\sqrt[3]2`` is ``\\sqrt[3]{2}``. A digit, a letter or a control word (``\\pi``) counts as a
    token; anything else leaves that operator as written. One linear pass, no recursion.
    """
    close: dict[int, int] = {}
    stack: list[int] = []
    for i, c in enumerate(s):
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            close[stack.pop()] = i
    inserts: list[tuple[int, int]] = []  # (position, 0 = "}" / 1 = "{"): "}" first on ties
    for m in _SHORTHAND_OP.finditer(s):
        i = m.end()
        if m.group(0) == "\\sqrt":
            root = _ROOT_INDEX.match(s, i)
            i = root.end() if root else i
        spans = []
        for _ in range(1 if m.group(0) == "\\sqrt" else 2):
            tok = _ARG_TOKEN.match(s, i)
            if tok is None:
                break
            if tok.group(1):  # a braced group: skip it (its contents are scanned anyway)
                end = close.get(tok.start(1))
                if end is None:
                    break
                i = end + 1
                continue
            if _SHORTHAND_OP.fullmatch(tok.group(2)):
                break  # \frac\sqrt2 3: not a plain argument
            spans.append((tok.start(2), tok.end(2)))
            i = tok.end(2)
        else:
            for start, end in spans:
                inserts += [(start, 1), (end, 0)]
    out, prev = [], 0
    for pos, kind in sorted(inserts):
        out += [s[prev:pos], "{" if kind else "}"]
        prev = pos
    out.append(s[prev:])
    return "".join(out)


def _canonical_int(s: str) -> str:
    sign = "-" if s.startswith("-") else ""
    digits = s.lstrip("+-").lstrip("0") or "0"
    return "0" if digits == "0" else sign + digits


@functools.lru_cache(maxsize=1)
def _mv() -> Any:
    pred_cfg = [
        LatexExtractionConfig(
            boxed_match_priority=0,
            try_extract_without_anchor=False,
            normalization_config=NormalizationConfig(
                basic_latex=True,
                units=True,
                malformed_operators=True,  # as the gold's default config (\frac12, sqrt(2), 2^(3))
                nits=False,
                boxed="all",
                equations=False,
            ),
        )
    ]
    gold_latex = [LatexExtractionConfig()]
    gold_expr = [LatexExtractionConfig(), ExprExtractionConfig()]
    return math_verify, pred_cfg, gold_latex, gold_expr


_SAFE_EXPR = re.compile(r"[0-9\s.+\-*/^(),]+")


@functools.lru_cache(maxsize=8192)
def _gold(answer: str) -> tuple[list[Any], str | None, str]:
    """(parsed gold, canonical integer or None, normalised string) for a reference answer."""
    norm = normalize_answer(answer)
    int_val = _canonical_int(norm) if _INT.fullmatch(norm) else None
    mv, _, gold_latex, gold_expr = _mv()
    inner = last_boxed(answer) or answer.strip().strip("$")
    cfg = gold_expr if _SAFE_EXPR.fullmatch(inner) else gold_latex
    parsed: list[Any] = []
    if not is_hostile(inner, 10_000):
        inner = _expand_shorthand(inner)  # adds braces only: at most 3x the length
        if not is_hostile(inner, 30_000):
            try:
                parsed = mv.parse("\\boxed{" + inner + "}", cfg, parsing_timeout=None)
                if not parsed:
                    parsed = mv.parse("$" + inner + "$", cfg, parsing_timeout=None)
            except Exception:
                parsed = []
    return parsed, int_val, norm


def _exact_int_match(parsed: list[Any], gold_int: str) -> bool:
    target = sympy.Integer(int(gold_int)) if len(gold_int) < 4000 else None
    for e in parsed:
        if isinstance(e, str):
            n = normalize_answer(e)
            if _INT.fullmatch(n) and _canonical_int(n) == gold_int:
                return True
            continue
        if target is None or not isinstance(e, sympy.Basic) or not e.is_number:
            continue
        if isinstance(e, sympy.Float):
            e = sympy.Rational(e)  # exact binary value: 1e20 != 10**20 + 1
        if sympy.expand(e - target) == 0:
            return True
    return False


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise _MathTimeout()

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _score(
    completion: str, answer: str, last_number_fallback: bool, max_answer_chars: int
) -> float:
    cand = extract_answer(completion, last_number_fallback=last_number_fallback)
    if cand is None:
        return 0.0
    cand = cand.strip()
    if not cand:
        return 0.0
    cand_norm = normalize_answer(cand)
    gold_text = answer if len(answer) <= MAX_TAIL_CHARS else answer[:MAX_TAIL_CHARS]
    gold_norm = normalize_answer(gold_text)
    if _INT.fullmatch(gold_norm) and _INT.fullmatch(cand_norm):
        return float(_canonical_int(cand_norm) == _canonical_int(gold_norm))  # exact, any size
    if cand_norm and cand_norm == gold_norm:
        return 1.0
    if is_hostile(cand, max_answer_chars) or is_hostile(gold_text, 10_000):
        return 0.0
    cand = _expand_shorthand(cand)
    if is_hostile(cand, 3 * max_answer_chars):  # the guards again, on what math-verify sees
        return 0.0
    gold_parsed, gold_int, _ = _gold(gold_text)
    mv, pred_cfg, _, _ = _mv()
    pred = mv.parse("\\boxed{" + cand + "}", pred_cfg, parsing_timeout=None)
    if not pred or not gold_parsed:
        return 0.0
    if gold_int is not None:
        numeric = [e for e in pred if not isinstance(e, str) and getattr(e, "is_number", False)]
        if numeric or all(isinstance(e, str) for e in pred):
            return float(_exact_int_match(pred, gold_int))
    return float(bool(mv.verify(gold_parsed, pred, timeout_seconds=None)))


def math_reward(
    completion: str,
    answer: str,
    *,
    last_number_fallback: bool = False,
    max_answer_chars: int = 1000,
    timeout_s: float | None = None,
) -> float:
    """1.0 if the completion's final answer equals the reference ``answer``, else 0.0.

    Never raises. ``timeout_s`` adds a SIGALRM deadline when called from a main thread (off by
    default; the reward runner's workers enforce their own hard limit).
    """
    try:
        with _deadline(timeout_s):
            return _score(
                _sanitize(completion), _sanitize(answer), last_number_fallback, max_answer_chars
            )
    except _MathTimeout:
        return 0.0
    except Exception:
        return 0.0


@register_reward("math")
def math_accuracy(
    completion: str,
    example: dict,
    *,
    answer_field: str = "answer",
    last_number_fallback: bool = False,
    max_answer_chars: int = 1000,
) -> float:
    """Registry "math": :func:`math_reward` against ``example[answer_field]``."""
    answer = example.get(answer_field)
    if answer is None:
        raise KeyError(f"example has no {answer_field!r} field (keys: {sorted(example)})")
    return math_reward(
        completion,
        str(answer),
        last_number_fallback=last_number_fallback,
        max_answer_chars=max_answer_chars,
    )


def warmup() -> None:
    """Pay math-verify's first-call costs (grammar set-up, caches) outside any time limit."""
    math_reward("<think>x</think> \\boxed{\\frac{1}{2}}", "0.5")
    math_reward("\\boxed{x^2+1}", "1+x^2")


math_accuracy.__rlvr_warmup__ = warmup  # type: ignore[attr-defined]
