"""Answer forms the math reward rewrites or reads before (or instead of) symbolic comparison.

Each rule applies to the prediction and the reference alike (the comparison is symmetric
in these forms), with a test in ``tests/test_rewards_math_forms.py``:

* trailing punctuation (``5.``, ``x=3;``) and ``\\text{.}`` are dropped;
* ``\\mid`` / ``\\vert`` / ``\\lvert`` / ``\\rvert`` read as ``|`` (set-builder notation);
* ``\\text{..}`` / ``\\mathrm{..}`` inside a subscript become plain letters
  (``\\lambda_{\\text{red}}`` -> ``\\lambda_{red}``), so the parser does not stop there;
* scientific e-notation, when it is the whole answer: ``4.5e33`` / ``1e-3`` ->
  ``4.5\\times10^{33}`` / ``1\\times10^{-3}`` (``2e+1`` inside an expression stays 2e + 1);
* mixed numbers: ``4 4/9`` and ``4\\frac{4}{9}`` (an integer, then a proper fraction of
  integers, and nothing else) -> ``(4+\\frac{4}{9})`` = 40/9; ``-1 1/2`` -> ``-(1+\\frac{1}{2})``;
* thousands grouped by spaces (``1 000 000``) lose the spaces; any other space between two
  digits is kept (``4 4`` is not ``44``);
* redundant braces: a group whose whole content is one group (``{{x}}``), and bare groups
  not attached to a macro, ``^``, ``_`` or a previous argument, are unwrapped (TeX reads them
  as the same expression; the LaTeX parser's cost grows exponentially with their depth);
* unit words after a number (``5 cm``, ``12 dollars``, ``\\frac{270}7\\text{ degrees}``,
  ``6\\text{ cm}^2``, ``\\textbf{meters}``) are dropped; function names (``\\sin``, ``ln``,
  ``pi``...) are not units; after a space, one SI letter is a unit too (``5 m``, ``3 s``,
  ``5 m/s``). A word glued to the number is dropped only if it is a unit name
  of three letters or more from a fixed list (``10weeks``); ``10m``, ``5h``, ``3ab`` keep their
  letters (a number times variables). math-verify's own unit stripping, which also drops
  single letters (``m``, ``t``, ``h``, ``s``) and pairs (``ab``, ``bc``) as units, is off;
* percent: ``X\\%`` compares as ``X`` or ``X/100`` (both ways: ``10\\%`` = ``0.1`` = ``10``
  whichever side carries the sign);
* multiple choice: ``(C)``, ``\\text{(C)}``, ``C)``, ``C.``, ``\\textbf{(C)}`` are the letter
  C; ``(C) 12`` is the letter C *or* the value 12. A bare letter never equals an option's value
  (the options are not known to the reward);
* clock times ``9:00``, ``9:00 AM``, ``9 p.m.``: equal when the minutes agree and the hours
  agree on a 24-hour clock if both carry am/pm; if one side carries am/pm, the other's hour
  may be its 24-hour or its 12-hour reading (``9 PM`` = ``21:00`` = ``9:00``); without am/pm
  on either side the hours must be equal (``2:30`` is not ``14:30``).

European decimal commas are *not* read (``1,5`` is the list 1, 5; ``3,14`` is not 3.14):
a comma with three digits after it is a thousands separator (``1,000``), any other comma
separates items. This follows the answer conventions of MATH / AIME (Hendrycks et al.);
Math-Verify reads ``1,22`` as 1.22, and its test cases for that are counted as disagreements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Clock",
    "choice_of",
    "clock_of",
    "collapse_braces",
    "percent_alternatives",
    "prepare",
]

_TRAILING_PUNCT = re.compile(r"(?:\s|\\text\{\s*[.,;:]?\s*\}|\\[,;:!]|[.,;:])+$")
_MID = re.compile(r"\\(?:mid|vert|lvert|rvert)(?![A-Za-z])")
_SUB_TEXT = re.compile(
    r"_\s*(\{)?\s*\\(?:text|mathrm|textrm|mathit|textit|operatorname|mbox)\s*\{([A-Za-z0-9 ]{1,40})\}\s*(?(1)\})"
)
_SCI = re.compile(r"(-?\d+(?:\.\d+)?)[eE]([+-]?\d{1,6})")  # the whole answer only
_MIXED_PLAIN = re.compile(r"(-?)(\d+)\s+(\d+)\s*/\s*(\d+)")
_MIXED_FRAC = re.compile(r"(-?)(\d+)\s*\\[dt]?frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_SPACE_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\s|\\,|\\ |~|\\;|\\!)\d{3})+(?![\d])")
_UNIT_TEXT = re.compile(
    r"^(?P<num>.*?(?:[\d}]|\\[A-Za-z]+))\s*(?:\\[,;!: ])?\s*"
    r"\\(?:text|mbox|mathrm|textrm|textnormal|textbf|mathbf|textit|mathit|textsf|mathsf)\s*\{\s*"
    r"(?P<unit>[A-Za-z][A-Za-z ./]{0,30}(?:\^\s*\{?\s*[23]\s*\}?)?)\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?$"
)
_UNIT_PLAIN = re.compile(
    r"^(?P<num>[-+]?(?:\d[\d,]*(?:\.\d+)?(?:/\d+)?|\\[dt]?frac\{\d+\}\{\d+\})"
    r"(?:\s*\\sqrt\{?\d+\}?|\s*\\pi)?)\s+"
    r"(?P<unit>[A-Za-z]{2,}(?:\s+[A-Za-z]{2,}){0,2}\.?|[mgshLKNJWV](?:/[a-z]{1,3})?)"
    r"(?:\s*\^\s*\{?[23]\}?)?$"
)
# Unit words that may follow a number with no space (``10weeks``); shorter or other glued
# letters stay (``10m``, ``3ab``: a number times variables).
_UNIT_GLUED = re.compile(
    r"^(?P<num>[-+]?\d[\d,]*(?:\.\d+)?)"
    r"(?P<unit>(?:week|day|hour|minute|second|month|year|mile|dollar|cent|unit|degree|pound"
    r"|gram|kilogram|meter|metre|kilometer|centimeter|liter|litre|gallon|ounce|yard|acre"
    r"|person|student)s?|inch(?:es)?|feet|foot|people)\.?$",
    re.IGNORECASE,
)
_NOT_UNITS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi", "and", "or",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "mod", "pmod", "infty", "times",
    "cdot", "div", "pm", "mp", "frac", "dfrac", "circ", "deg", "is", "if", "hundred",
    "thousand", "million", "billion", "trillion", "dozen", "percent",
}  # fmt: skip


def collapse_braces(s: str) -> str:
    """Unwrap redundant ``{...}`` groups (see module docstring); linear, escapes untouched."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2  # \{ \} and any other escaped char
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    if stack or not pairs:
        return s
    drop: set[int] = set()
    for o, cl in pairs.items():
        inner_o = o + 1
        while inner_o < cl and s[inner_o] == " ":
            inner_o += 1
        inner_c = cl - 1
        while inner_c > o and s[inner_c] == " ":
            inner_c -= 1
        if pairs.get(inner_o) == inner_c and inner_o < inner_c:
            drop.update((inner_o, inner_c))  # {{x}} -> {x}: the inner pair goes
        j = o - 1
        while j >= 0 and s[j] == " ":
            j -= 1
        k = cl + 1
        while k < len(s) and s[k] == " ":
            k += 1
        followed_by_script = k < len(s) and s[k] in "^_"
        if (j < 0 or s[j] in "+-*/=(,<>|&") and not followed_by_script:
            drop.update((o, cl))  # a bare group: TeX grouping only ({a+b}^2 keeps its braces)
    if not drop:
        return s
    return "".join(c for k, c in enumerate(s) if k not in drop)


def _mixed(s: str) -> str:
    for pattern in (_MIXED_PLAIN, _MIXED_FRAC):
        m = pattern.fullmatch(s)
        if m and int(m.group(3)) < int(m.group(4)) and int(m.group(4)) > 0:
            sign, whole, num, den = m.groups()
            return f"{sign}({whole}+\\frac{{{num}}}{{{den}}})"
    return s


def _sci(m: re.Match[str]) -> str:
    exp = m.group(2).lstrip("+")
    return f"{m.group(1)}\\times10^{{{exp}}}"


def _strip_units(s: str) -> str:
    for pattern in (_UNIT_TEXT, _UNIT_PLAIN, _UNIT_GLUED):
        m = pattern.fullmatch(s)
        if m:
            words = re.sub(r"[./^{}0-9]", " ", m.group("unit").lower()).split()
            if words and not any(w in _NOT_UNITS for w in words):
                return m.group("num").strip()
    return s


def prepare(s: str) -> str:
    """The rewrites of the module docstring that turn an answer into parser-friendly LaTeX."""
    s = s.strip()
    if s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s.strip("$").strip()
    s = _TRAILING_PUNCT.sub("", s)
    s = _MID.sub("|", s)
    s = _SUB_TEXT.sub(lambda m: "_{" + m.group(2).replace(" ", "") + "}", s)
    if _SCI.fullmatch(s):
        s = _SCI.sub(_sci, s)
    s = _SPACE_THOUSANDS.sub(lambda m: re.sub(r"\D", "", m.group(0)), s)
    s = collapse_braces(s)
    s = _strip_units(s)
    s = _mixed(s)
    return s


_PERCENT = re.compile(r"^(.*?)\s*(?:\\%|%|\\text\{\s*\\?%\s*\})$")


def percent_alternatives(s: str) -> list[str]:
    """``[s]``, or for ``X\\%`` the readings ``X`` and ``X/100``."""
    m = _PERCENT.fullmatch(s.strip())
    if not m or not m.group(1).strip():
        return [s]
    x = m.group(1).strip()
    return [x, f"\\frac{{{x}}}{{100}}"]


_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LETTER = re.compile(r"\(?\s*([A-Ea-e])\s*\)?\s*[.:]?")
_LETTER_VALUE = re.compile(r"(?:\(\s*([A-E])\s*\)|([A-E])\s*[.):])\s*(.+)")


def choice_of(s: str) -> tuple[str | None, str | None]:
    """(option letter, option value) of a multiple-choice answer; (None, None) otherwise."""
    t = s.strip()
    for _ in range(2):
        t = _WRAP.sub(r"\1", t)
    t = t.replace("\\ ", " ").replace("\\,", " ").replace("~", " ").strip()
    m = _LETTER.fullmatch(t)
    if m and (t != m.group(1) or t.isupper()):
        return m.group(1).upper(), None
    m = _LETTER_VALUE.fullmatch(t)
    if m:
        return (m.group(1) or m.group(2)), m.group(3).strip() or None
    return None, None


@dataclass(frozen=True)
class Clock:
    hour: int
    minute: int
    meridiem: str | None  # "am" / "pm" / None

    def same_time(self, other: Clock) -> bool:
        if self.minute != other.minute:
            return False
        if self.meridiem and other.meridiem:
            return self._h24() == other._h24()
        if self.meridiem or other.meridiem:  # 9 PM = 21:00 = 9:00 (a 12-hour reading)
            x, y = (self, other) if self.meridiem else (other, self)
            return y.hour in (x._h24(), x.hour % 12 or 12)
        return self.hour == other.hour  # no am/pm on either side: 2:30 is not 14:30

    def _h24(self) -> int:
        h = self.hour % 12
        return h + 12 if self.meridiem == "pm" else h


_CLOCK = re.compile(r"(\d{1,2})(?::(\d{2}))?(?::\d{2})?\s*((?:a|p)\.?\s*m\.?)?", re.IGNORECASE)


def clock_of(s: str) -> Clock | None:
    """The time of day written in ``s`` (``9:30``, ``9:30 PM``, ``9 a.m.``), else None."""
    t = s.strip()
    for _ in range(2):
        t = _WRAP.sub(r"\1", t)
    t = re.sub(r"\\[!,;: ]|~|\$", "", t).strip()
    m = _CLOCK.fullmatch(t)
    if not m or (m.group(2) is None and m.group(3) is None):
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if hour > 23 or minute > 59:
        return None
    meridiem = None
    if m.group(3):
        if hour > 12:
            return None
        meridiem = "am" if m.group(3).lower().startswith("a") else "pm"
    return Clock(hour, minute, meridiem)
