"""Math answer reward: extract the final answer, then compare it with the reference.

    math_reward(completion, answer) = 1.0 if extract(completion) == answer else 0.0

Extraction (:mod:`rewards.math_extract`): on the text after the last ``</think>``, in
``mode="auto"`` (default) boxed first (the last group of adjacent boxes, joined as a list),
then an ``<answer>`` tag, then explicit answer phrases ("final answer is", "Answer:"; the
expression, not the sentence; a phrase after the last box overrides it), then the last math
expression (``$..$``, ``\\[..\\]``, a trailing number; inline math ends at its line, and a
``$``/``\\(`` pair across lines yields nothing). ``mode="answer"`` drops the last-expression
fallback; ``mode="boxed"`` is the strict boxed-only format.

Comparison, after the answer-form rewrites of :mod:`rewards.math_forms` on both sides
(punctuation, mixed numbers, e-notation, set-builder bars, subscript text, redundant braces,
unit words; percent, multiple-choice letters and clock times as alternatives): integer
references are compared exactly (integer strings by value; parsed numbers by exact rational
arithmetic), so ``10^{20}`` never equals ``10^{20}+1``. Other references use math-verify
(huggingface/Math-Verify, read at v0.8/0.9): ``verify(gold, pred)`` with the gold first (the
function is asymmetric), the gold wrapped in ``\\boxed{}`` before parsing (Skywork-OR1's
finding), brace-free macro arguments braced on both sides as TeX reads them (``\\frac12`` =
``\\frac{1}{2}``, ``\\frac123`` = ``\\frac{1}{2}3``, ``\\sqrt2`` = ``\\sqrt{2}``), LaTeX extraction
only for the prediction (math-verify's expression extractor calls sympy ``parse_expr``, i.e.
``eval``; model output never reaches it), ``i`` read as the imaginary unit when it is the only
symbol on both sides (``i(2-i)`` = ``1+2i``), and a normalised string equality fallback for
non-mathematical answers ("B", "yes", set-builder sets). math-verify's unit stripping is off
(its unit list holds single letters: ``10m`` was ``10``); the unit rule of
:mod:`rewards.math_forms` replaces it. A plain decimal, the whole answer, must be a correct
rounding of the other side (within half a unit of its last place): math-verify alone rounds
both to 6 places, which made ``0.0000001`` equal ``0.0000002``.

Hostile outputs are cut before parsing: candidates longer than ``max_answer_chars``, nesting
deeper than 30 (braces: 20, after redundant ones are unwrapped), exponent towers (``a^b^c``,
``(a^b)^c``), exponents above 10^5 or powers of more than 2*10^5 digits, symbolic powers with
exponents above 200, factorials of large or compound arguments, binomials with more than
10^4 digits, and sums / products / integrals / limits with numbers above 20 score 0 without
reaching sympy; :func:`hostile_count` counts them per process. math-verify's own
``signal.alarm`` time-outs are switched off (they only work in a main thread); the reward
runner enforces a hard wall-clock limit per call in its worker processes. ``math_reward``
never raises for any ``str`` input (lone surrogates and NULs included).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import signal
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import math_verify
import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig
from math_verify.parser import NormalizationConfig

from rewards.base import register_reward
from rewards.math_extract import MAX_TAIL_CHARS, MODES, answer_region, balanced_group, last_boxed
from rewards.math_extract import boxed_answer as _boxed_answer
from rewards.math_extract import extract_answer as _extract
from rewards.math_forms import choice_of, clock_of, collapse_braces, percent_alternatives, prepare

__all__ = [
    "math_reward",
    "math_accuracy",
    "extract_answer",
    "last_boxed",
    "answer_region",
    "is_hostile",
    "normalize_answer",
    "warmup",
    "hostile_count",
    "MODES",
]

logging.getLogger("math_verify").setLevel(logging.ERROR)  # silence "timeout disabled" notices

MAX_NESTING = 30
MAX_EXPONENT = 100_000
MAX_POWER_DIGITS = 200_000  # digits of base * exponent allowed for one literal power
MAX_FACTORIAL = 2_000
MAX_BRACE_NESTING = 20  # deeper (after redundant groups are unwrapped) is cut
MAX_SYMBOLIC_EXPONENT = 200
MAX_BINOMIAL_DIGITS = 10_000

_HOSTILE = {"count": 0}
_BIG_OPERATOR = re.compile(r"\\(?:sum|prod|int|iint|iiint|oint|lim|bigcup|bigcap)(?![A-Za-z])")


class _MathTimeout(BaseException):
    """Raised by the optional main-thread deadline of :func:`math_reward`."""


def _sanitize(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    # lone surrogates and other unencodable code points become "?"; NULs are dropped
    return text.encode("utf-8", "replace").decode("utf-8", "replace").replace("\x00", "")


def extract_answer(
    completion: str,
    *,
    mode: str = "auto",
    last_number_fallback: bool | None = None,
    max_chars: int = 10_000,
) -> str | None:
    """The final answer of a completion (:mod:`rewards.math_extract` rules), or None."""
    return _extract(
        _sanitize(completion),
        mode=mode,
        last_number_fallback=last_number_fallback,
        max_chars=max_chars,
    )


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
    if best > MAX_NESTING or _brace_depth(candidate) > MAX_BRACE_NESTING:
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
            if re.search(r"[A-Za-z]", base) and base.startswith(("(", "[", "{")):
                if int(exp_digits) > MAX_SYMBOLIC_EXPONENT:
                    return True  # (x+1)^{1000}: expanding it is the cost
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
        for m in _BINOM.finditer(s):
            n, k = int(m.group(1) or m.group(3)), int(m.group(2) or m.group(4))
            if 0 <= k <= n and _binomial_digits(n, k) > MAX_BINOMIAL_DIGITS:
                return True
    return False


_BINOM = re.compile(r"\\[dt]?binom\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}|(\d+)\s*\\choose\s*(\d+)")


def _binomial_digits(n: int, k: int) -> float:
    """log10 C(n, k) from log-gamma (no big integers are built)."""
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10)


def _brace_depth(s: str) -> int:
    """Deepest ``{`` nesting once redundant groups are unwrapped (escaped braces ignored)."""
    t = collapse_braces(s)
    depth = best = 0
    i = 0
    while i < len(t):
        c = t[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
            best = max(best, depth)
        elif c == "}":
            depth -= 1
        i += 1
    return best


# ---------------------------------------------------------------------------------------------
# normalisation and comparison
# ---------------------------------------------------------------------------------------------

_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_INT = re.compile(r"[+-]?\d+")
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+")


_DIGIT_SPACE = re.compile(r"(?<=\d)\s+(?=\d)")


def normalize_answer(s: str) -> str:
    """String form for the equality shortcut: wrappers, spacing, ``$``, ``%``, degrees dropped.

    White space between two digits is kept as one space (``4 4/9`` is not ``44/9``).
    """
    s = s.strip()
    spaced_comma = re.search(r",\s", s) is not None
    for _ in range(3):
        s = _TEXT_WRAP.sub(r"\1", s)
    for tok in ("\\left", "\\right", "\\displaystyle", "\\!", "\\,", "\\;", "\\:", "\\ ", "$"):
        s = s.replace(tok, " " if tok in ("\\,", "\\;", "\\:", "\\ ") else "")
    s = s.replace("{,}", ",").replace("^\\circ", "").replace("^{\\circ}", "")
    s = s.replace("\\%", "").rstrip("%")  # percentages compare by their number (Hendrycks)
    s = re.sub(r"\\(?:mid|vert)(?![A-Za-z])", "|", s)
    s = _DIGIT_SPACE.sub("\x01", s.strip())
    s = re.sub(r"\s+", "", s).replace("\x01", " ")
    s = s.rstrip(".")
    if _THOUSANDS.fullmatch(s) and not spaced_comma:
        s = s.replace(",", "")  # 32,349 is a number; 32, 349 a list
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


# math-verify's defaults for the reference, less its unit stripping: that drops a trailing
# word from a list of unit names which holds single letters and pairs ("m", "t", "h", "c",
# "s", "ab", "bc"), so "10m", "x + 3t" or "3ab" lost their variable and equalled "10",
# "x + 3", "3". rlvr's unit rule (rewards.math_forms: after a number, a \text{}-like group,
# a word of two or more letters or one SI letter after a space, or a unit name glued from a
# fixed list) replaces it on both sides.
_NO_UNITS = NormalizationConfig(
    basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all",
    equations=False,
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def _mv() -> Any:
    pred_cfg = [
        LatexExtractionConfig(
            boxed_match_priority=0,
            try_extract_without_anchor=False,
            normalization_config=NormalizationConfig(
                basic_latex=True,
                units=False,  # rlvr's own unit rule (math_forms); see _NO_UNITS
                malformed_operators=True,  # as the gold's default config (\frac12, sqrt(2), 2^(3))
                nits=False,
                boxed="all",
                equations=False,
            ),
        )
    ]
    gold_latex = [LatexExtractionConfig(normalization_config=_NO_UNITS)]
    gold_expr = [LatexExtractionConfig(normalization_config=_NO_UNITS), ExprExtractionConfig()]
    return math_verify, pred_cfg, gold_latex, gold_expr


_SAFE_EXPR = re.compile(r"[0-9\s.+\-*/^(),]+")


@functools.lru_cache(maxsize=8192)
def _gold(inner: str) -> list[Any]:
    """Parsed reference (already :func:`rewards.math_forms.prepare`-d); [] if unparseable."""
    mv, _, gold_latex, gold_expr = _mv()
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
    return parsed


_SPAN_THEN_WORDS = re.compile(r"\$([^$]{1,200})\$\s*([A-Za-z][A-Za-z .]{0,40})")


def _reference_text(answer: str) -> str:
    """The reference's answer: its boxed group if it has boxes, else the text without ``$``.

    One math span then words loses its ``$`` (``$125$ miles`` -> ``125 miles``).
    """
    if "\\boxed" in answer or "\\fbox" in answer:
        boxed = _boxed_answer(answer)
        if boxed is not None:
            return boxed
    text = answer.strip().strip("$").strip()
    m = _SPAN_THEN_WORDS.fullmatch(answer.strip())
    return f"{m.group(1).strip()} {m.group(2).strip()}" if m else text


_I = sympy.Symbol("i")


def _imaginary(parsed: list[Any]) -> list[Any] | None:
    """``parsed`` with the symbol ``i`` as the imaginary unit, if ``i`` is its only symbol."""
    out: list[Any] = []
    seen = False
    for e in parsed:
        if isinstance(e, sympy.Basic) and not isinstance(e, sympy.logic.boolalg.Boolean):
            free = e.free_symbols
            if free and {str(x) for x in free} != {"i"}:
                return None
            if free:
                seen = True
                e = e.xreplace({x: sympy.I for x in free})
        out.append(e)
    return out if seen else None


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


def _hostile(text: str, limit: int) -> bool:
    if is_hostile(text, limit):
        _HOSTILE["count"] += 1
        return True
    return False


def hostile_count() -> int:
    """How many candidates / references this process cut as hostile (never parsed)."""
    return _HOSTILE["count"]


def _same(cand: str, gold: str, max_answer_chars: int) -> bool:
    """One prepared prediction against one prepared reference."""
    cand_norm = normalize_answer(cand)
    gold_norm = normalize_answer(gold)
    if not cand_norm:
        return False
    if _INT.fullmatch(gold_norm) and _INT.fullmatch(cand_norm):
        return _canonical_int(cand_norm) == _canonical_int(gold_norm)  # exact, any size
    if cand_norm == gold_norm:
        return True
    if _hostile(cand, max_answer_chars) or _hostile(gold, 10_000):
        return False
    cand = _expand_shorthand(cand)
    if _hostile(cand, 3 * max_answer_chars):  # the guards again, on what math-verify sees
        return False
    gold_parsed = _gold(gold)
    gold_int = _canonical_int(gold_norm) if _INT.fullmatch(gold_norm) else None
    mv, pred_cfg, _, _ = _mv()
    pred = mv.parse("\\boxed{" + cand + "}", pred_cfg, parsing_timeout=None)
    if not pred or not gold_parsed:
        return False
    gold_i, pred_i = _imaginary(gold_parsed), _imaginary(pred)
    if (gold_i is not None or pred_i is not None) and (
        (gold_i is not None or _imaginary_free(gold_parsed))
        and (pred_i is not None or _imaginary_free(pred))
    ):
        gold_parsed, pred = gold_i or gold_parsed, pred_i or pred  # i is the imaginary unit
    if gold_int is not None:
        numeric = [e for e in pred if not isinstance(e, str) and getattr(e, "is_number", False)]
        if numeric or all(isinstance(e, str) for e in pred):
            return _exact_int_match(pred, gold_int)
    if not mv.verify(gold_parsed, pred, timeout_seconds=None):
        return False
    return not (
        _rounding_veto(cand, gold, pred, gold_parsed)
        or _element_rounding_veto(cand, gold_parsed)
        or _element_rounding_veto(gold, pred)
    )


_DECIMAL = re.compile(r"[+-]?(?:\d+\.(\d{1,60})|\.(\d{1,60}))")


def _rounding_veto(cand: str, gold: str, pred: list[Any], gold_parsed: list[Any]) -> bool:
    """True when a plain decimal on either side is not a correct rounding of the other side.

    math-verify compares numbers after rounding both to 6 decimal places, so ``0.0000001``
    equalled ``0.0000002`` and ``0.1234564`` equalled ``0.1234555``. A decimal with d places
    is accepted only within half a unit of its last place (``0.083333`` for 1/12: yes;
    ``0.0000004`` for 1/3000000: no); two decimals are compared exactly.
    """
    for text, other_text, other in ((cand, gold, gold_parsed), (gold, cand, pred)):
        m = _DECIMAL.fullmatch(text.strip())
        if not m:
            continue
        places = len(m.group(1) or m.group(2))
        value = sympy.Rational(text.strip())
        if _DECIMAL.fullmatch(other_text.strip()) or _INT.fullmatch(other_text.strip()):
            target: Any = sympy.Rational(other_text.strip())
        else:
            nums = [e for e in other if isinstance(e, sympy.Basic) and e.is_number]
            if not nums:
                continue
            target = nums[0]
        try:
            diff = abs(sympy.N(target - value, 30))
            if diff > sympy.Rational(1, 2 * 10**places):
                return True
        except (TypeError, ValueError, ArithmeticError):
            return True  # not a comparable number: no numeric acceptance
    return False


# A decimal standing alone as an item: after the start, ``,`` ``(`` ``[`` ``&`` ``=`` ``;``
# ``\\`` ``\{`` or ``\begin{..matrix}``, before the end or a delimiter; "3-0.5", "1.5x" and
# ``\sqrt{10.5}`` hold none. Thousands commas are removed first; prose is not scanned.
_ITEM_DECIMAL = re.compile(
    r"(?:^|(?<=[,(\[&=;])|(?<=\\)|(?<=\\\{)|(?<=matrix\}))"
    r"\s*(-?)\s*(\d{1,30}\.(\d{1,30})|\.(\d{1,30}))\s*(?=$|[,)\]&;\\])"
)
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}")
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}")
_MAX_ITEMS = 64  # decimal items checked per answer; beyond: left to math-verify
_MAX_NODES = 512  # numbers collected per side; beyond: left to math-verify


def _numeric_values(parsed: list[Any]) -> list[Fraction] | None:
    """Values of every real numeric sub-expression of the parsed answer (matrix entries too).

    Exact for rationals, 30 significant digits otherwise; ``None`` past ``_MAX_NODES``.
    """
    nodes: set[Any] = set()
    for e in parsed:
        items = list(e) if isinstance(e, sympy.MatrixBase) else [e]
        for item in items:
            if not isinstance(item, sympy.Basic):
                continue
            for node in sympy.preorder_traversal(item):
                if getattr(node, "is_number", False) and not isinstance(
                    node, sympy.logic.boolalg.Boolean
                ):
                    nodes.add(node)
                    if len(nodes) > _MAX_NODES:
                        return None
    values: list[Fraction] = []
    for node in nodes:
        try:
            if node.is_Rational:
                values.append(Fraction(int(node.p), int(node.q)))
                continue
            v = sympy.N(node, 30)
            if v.is_Float:
                values.append(Fraction(str(v)))
        except (TypeError, ValueError, ArithmeticError, ZeroDivisionError):
            continue
    return values


def _element_rounding_veto(text: str, other: list[Any]) -> bool:
    """True when a decimal item of ``text`` has no number on the other side it rounds.

    The whole-answer rule of :func:`_rounding_veto` for items of tuples, intervals, matrices
    and ``x = ...``: ``(0.0000001, 1)`` is not ``(0.0000002, 1)`` although math-verify's
    6-place rounding equates them; ``(0.5, 0.25)`` = ``(\\frac12, \\frac14)`` still holds.
    """
    if len(text) > 2000 or _PROSE_WORD.search(_ENVIRONMENT.sub("", text)):
        return False
    found = _ITEM_DECIMAL.findall(_THOUSANDS_COMMA.sub("", text))
    if not found or len(found) > _MAX_ITEMS:
        return False
    values = _numeric_values(other)
    if not values:
        return False
    for sign, digits, frac_a, frac_b in found:
        value = Fraction(sign + (digits if not digits.startswith(".") else "0" + digits))
        half = Fraction(1, 2 * 10 ** len(frac_a or frac_b))
        if not any(abs(v - value) <= half for v in values):
            return True
    return False


def _imaginary_free(parsed: list[Any]) -> bool:
    return all(not isinstance(e, sympy.Basic) or not e.free_symbols for e in parsed)


def _alternatives(s: str) -> tuple[str | None, list[str]]:
    """(option letter, readings) of a prepared answer: percent and option-value readings."""
    letter, value = choice_of(s)
    readings = [s] if letter is None else ([value] if value else [])
    out: list[str] = []
    for r in readings:
        for alt in percent_alternatives(r):
            if alt not in out:
                out.append(alt)
    return letter, out


# A function written as ``y = ...`` or ``f(x) = ...`` (one letter, one variable): when both
# sides are (the same variable, or y on one side), the right sides are compared: the name is
# notation. Group 1: the variable (None for y); group 2: the right side.
_FUNCTION_DEF = re.compile(r"(?:y|[a-z]\(\s*([a-z])\s*\))\s*=\s*([^=,;<>]+)")


@functools.lru_cache(maxsize=4096)
def _reference(answer: str) -> tuple[str, Any, str]:
    """The reference's answer text, its clock time (or None) and its prepared form: the same
    for every sample of a group, so computed once per reference."""
    gold_text = _reference_text(
        answer if len(answer) <= MAX_TAIL_CHARS else answer[:MAX_TAIL_CHARS]
    )
    return gold_text, clock_of(gold_text), prepare(gold_text)


def _score(completion: str, answer: str, mode: str, max_answer_chars: int) -> float:
    cand = extract_answer(completion, mode=mode)
    if cand is None or not cand.strip():
        return 0.0
    gold_text, gold_clock, gold = _reference(answer)
    cand_clock = clock_of(cand)
    if gold_clock is not None and cand_clock is not None:
        return float(gold_clock.same_time(cand_clock))
    cand = prepare(cand)
    if not cand:
        return 0.0
    gold_def, cand_def = _FUNCTION_DEF.fullmatch(gold), _FUNCTION_DEF.fullmatch(cand)
    if (
        gold_def
        and cand_def
        and (
            None in (gold_def.group(1), cand_def.group(1)) or gold_def.group(1) == cand_def.group(1)
        )
    ):
        gold, cand = gold_def.group(2), cand_def.group(2)  # y = 2x+3 is f(x) = 2x+3
    gold_letter, gold_alts = _alternatives(gold)
    cand_letter, cand_alts = _alternatives(cand)
    if gold_letter is not None and cand_letter is not None:
        return float(gold_letter == cand_letter)
    for g in gold_alts:
        for c in cand_alts:
            if _same(c, g, max_answer_chars):
                return 1.0
    return 0.0


def _mode(extraction: str, last_number_fallback: bool | None) -> str:
    if last_number_fallback is not None:
        return "auto" if last_number_fallback else "answer"
    if extraction not in MODES:
        raise ValueError(f"math reward: extraction must be one of {MODES}, got {extraction!r}")
    return extraction


def math_reward(
    completion: str,
    answer: str,
    *,
    extraction: str = "auto",
    last_number_fallback: bool | None = None,
    max_answer_chars: int = 1000,
    timeout_s: float | None = None,
) -> float:
    """1.0 if the completion's final answer equals the reference ``answer``, else 0.0.

    ``extraction``: "auto" (boxed, answer tag, answer phrase, then the last math expression),
    "answer" (no last-expression fallback) or "boxed" (strict: ``\\boxed{}`` only).
    ``last_number_fallback`` is the older switch (True = "auto", False = "answer").
    Never raises for any ``str`` input (a bad ``extraction`` name raises ``ValueError``).
    ``timeout_s`` adds a SIGALRM deadline when called from a main thread (off by default; the
    reward runner's workers enforce their own hard limit).
    """
    mode = _mode(extraction, last_number_fallback)
    try:
        with _deadline(timeout_s):
            return _score(_sanitize(completion), _sanitize(answer), mode, max_answer_chars)
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
    extraction: str = "auto",
    last_number_fallback: bool | None = None,
    max_answer_chars: int = 1000,
) -> float:
    """Registry "math": :func:`math_reward` against ``example[answer_field]``."""
    answer = example.get(answer_field)
    if answer is None:
        raise KeyError(f"example has no {answer_field!r} field (keys: {sorted(example)})")
    return math_reward(
        completion,
        str(answer),
        extraction=extraction,
        last_number_fallback=last_number_fallback,
        max_answer_chars=max_answer_chars,
    )


def _validate(
    *,
    answer_field: str = "answer",
    extraction: str = "auto",
    last_number_fallback: bool | None = None,
    max_answer_chars: int = 1000,
) -> None:
    _mode(extraction, last_number_fallback)
    if not isinstance(max_answer_chars, int) or max_answer_chars < 1:
        raise ValueError(
            f"math reward: max_answer_chars must be a positive int, got {max_answer_chars!r}"
        )


math_accuracy.__rlvr_validate__ = _validate  # type: ignore[attr-defined]


def warmup() -> None:
    """Pay math-verify's first-call costs (grammar set-up, caches) outside any time limit."""
    for pred, gold in _WARMUP:
        math_reward(pred, gold)


# One of each common answer shape: the LaTeX parser (ANTLR) builds its prediction tables on
# first sight of a shape, which can take a second or more; workers pay that before any limit.
_WARMUP = (
    ("<think>x</think> \\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{x^2+1}", "1+x^2"),
    ("\\boxed{\\lambda_{\\text{a}}\\sqrt{2+\\sqrt{2}}}", "\\lambda_{\\text{a}}/\\sqrt{2}"),
    ("\\boxed{(1, \\frac{\\pi}{2})}", "\\left( 1, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{[0, 1)}", "(0,1]"),
    (
        "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}",
        "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}",
    ),
    ("\\boxed{\\{1, 2\\}}", "\\{2, 3\\}"),
    ("\\boxed{2-3i}", "i(2-i)"),
)


math_accuracy.__rlvr_warmup__ = warmup  # type: ignore[attr-defined]
