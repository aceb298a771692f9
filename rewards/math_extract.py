"""Final-answer extraction for the math reward: which part of a completion is "the answer".

The text after the last ``</think>`` is searched (a ``<think>`` opened and never closed
leaves nothing). In ``mode="auto"`` (the default) the first rule that yields a candidate wins:

1. **Boxed.** The last complete ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces, Hendrycks
   MATH ``last_boxed_only_string``; also ``\\boxed 42``). *Several boxes:* the last box and
   the boxes right before it that are separated from it only by commas, semicolons, "and",
   "or", ``$``, ``\\quad`` or white space form one answer, joined as ``"a, b"`` (a list or a
   pair of answers, e.g. ``x = \\boxed{1}`` and ``\\boxed{2}``). Boxes separated by other text
   are earlier attempts: only the last group counts.
   *Text after the box* is ignored, except an explicit answer phrase (rule 3) that comes
   after the last box and states a value (a number, LaTeX or a choice letter): a restated
   "The final answer is 7" overrides an earlier box; "the answer is correct" does not.
2. **Answer tag.** The last ``<answer>...</answer>`` block (a box inside it is rule 1).
3. **Answer phrase.** The last "final answer is", "final answer:", "the answer is",
   "Answer:" (case-insensitive, ``**`` bold marks allowed). The expression after it is taken,
   not the sentence: a math span (``$..$``, ``\\(..\\)``, ``\\[..\\]``) that opens the rest of
   the line, else the text up to the end of the sentence; a number followed by words
   ("12 apples") keeps the number.
4. **Bare expression**: a response that is one short line without ``$``, math delimiters or
   words (two letters or more, outside LaTeX commands) is the answer as a whole (``-\\frac{10}{9}``, ``1 000``).
5. **Last math expression** (the fallback of Math-Verify, lighteval and Qwen2.5-Math's
   grader): whichever ends last of the last math span (``$$..$$``, ``\\[..\\]``, ``\\(..\\)``,
   ``$..$``, prose-like spans skipped) and the last plain number outside math spans
   ("... so the total is 12.").

*Inline math ends at its line* (rules 3 and 5; Math-Verify's inline regexes, whose ``$..$``
and ``\\(..\\)`` contents exclude ``\\n``; display ``$$..$$`` and ``\\[..\\]`` may cross lines).
An inline pair whose closer is on a later line than its opener (``Answer $ \\n 9 \\n $``,
``\\( \\n \\frac12 \\n \\)``) is no span, and its content is markup, not prose: no plain number
is read from inside it (else ``$ \\n \\frac{1}{2} \\n $`` gave ``2``), an answer phrase before it
states nothing, and when it is the last expression the response has no answer (not an
earlier number). A ``$`` pair around prose (two words or more: ``$5 per hour.\\n ... 20 $``)
is currency and its numbers are read. Boxes are found by their braces and do not depend on
delimiters (``$\\boxed{\\n9\\n}$`` is 9).

``mode="answer"`` stops after rule 3 (explicit answers only); ``mode="boxed"`` uses rule 1
only (strict format, for training rewards that demand ``\\boxed{}``).

Everything here is linear-time string scanning with bounded look-back; no regular expression
can backtrack over unbounded input (candidate lengths are capped by ``max_chars``).
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_TAIL_CHARS",
    "MODES",
    "answer_region",
    "balanced_group",
    "boxed_answer",
    "extract_answer",
    "last_boxed",
]

MAX_TAIL_CHARS = 50_000
MODES = ("auto", "answer", "boxed")

_BOX_TOKENS = ("\\boxed", "\\fbox")
_BOX_SEPARATOR = re.compile(
    r"(?:\s|,|;|\$|\\quad|\\qquad|\\text\{\s*(?:and|or|,)?\s*\}|\\,|\\;|\band\b|\bor\b|&"
    r"|\\\(|\\\)|\\\[|\\\]|\b[A-Za-z](?:_\{?[A-Za-z0-9]{1,3}\}?)?\s*=)*"
)


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


def _box_before(text: str, pos: int, max_chars: int) -> tuple[int, int, str] | None:
    """(start, end, content) of the last complete box starting before ``pos``."""
    for _ in range(64):  # walk back over incomplete boxes, bounded
        idx = max(text.rfind(tok, 0, pos) for tok in _BOX_TOKENS)
        if idx < 0:
            return None
        tok = "\\boxed" if text.startswith("\\boxed", idx) else "\\fbox"
        j = idx + len(tok)
        if j < len(text) and text[j] == " ":
            m = re.match(r" +([^\s$]{1,%d})" % max_chars, text[j:])  # noqa: UP031
            if m and not m.group(1).startswith("{"):
                return idx, j + m.end(), m.group(1)
        k = j
        while k < len(text) and k < j + 8 and text[k] in " \t":
            k += 1
        if k < len(text) and text[k] == "{":
            inner = balanced_group(text, k, max_chars)
            if inner is not None:
                return idx, k + len(inner) + 2, inner
        pos = idx
    return None


def _box_group(text: str, max_chars: int) -> tuple[int, list[str]] | None:
    """(end of the last box, contents of the last group of adjacent boxes, in order)."""
    last = _box_before(text, len(text), max_chars)
    if last is None:
        return None
    start, end, inner = last
    contents = [inner]
    for _ in range(16):
        prev = _box_before(text, start, max_chars)
        if prev is None:
            break
        p_start, p_end, p_inner = prev
        gap = text[p_end:start]
        if p_end > start or len(gap) > 40 or not _BOX_SEPARATOR.fullmatch(gap):
            break
        contents.insert(0, p_inner)
        start = p_start
    return end, contents


def last_boxed(text: str, max_chars: int = 10_000) -> str | None:
    """Content of the last complete ``\\boxed{}`` / ``\\fbox{}`` (or ``\\boxed x``) in ``text``."""
    found = _box_before(text, len(text), max_chars)
    return None if found is None else found[2]


def boxed_answer(text: str, max_chars: int = 10_000) -> str | None:
    """The last group of adjacent boxes joined with ``", "`` (rule 1), or None."""
    group = _box_group(text, max_chars)
    if group is None:
        return None
    return ", ".join(c.strip() for c in group[1])


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_PHRASE = re.compile(
    r"(?:final\s+answer\s*(?:is|:)|the\s+answer\s+is|\banswer\s*(?:\*\*)?\s*:)\s*(?:\*\*)?\s*:?\s*",
    re.IGNORECASE,
)
_SPAN_OPEN = re.compile(r"\s*(\$\$|\$|\\\(|\\\[)")
_SPAN_CLOSE = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_NUMBER = re.compile(
    r"(?<![A-Za-z_])-?(?:\d{1,3}(?: \d{3})+(?![\d/])|\d[\d,]*(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*\d+|\s+\d+/\d+)?"
)  # not inside a word (AZYUK2A); "1 000", ".4", "4 4/9" and "3/4" are numbers
_NUMBER_WORDS = re.compile(r"(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)\s+[A-Za-z]{2,}(?:\s+[A-Za-z]+)*")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n|I hope it is correct|,\s+(?:which|so|since|because)")


def _phrase_expression(rest: str) -> str | None:
    """The expression that follows an answer phrase (see rule 3)."""
    m = _SPAN_OPEN.match(rest)
    if m:
        close = _SPAN_CLOSE[m.group(1)]
        end = rest.find(close, m.end())
        if end > m.end():
            content = rest[m.end() : end]
            if _malformed_inline(m.group(1), content):
                return None  # inline math across lines: no span, nothing read (rule 5 decides)
            inner = content.strip()
            if inner and not (m.group(1) in _INLINE and "\n" in content):
                return inner
    cut = _SENTENCE_END.search(rest)
    chunk = rest[: cut.start()] if cut else rest
    chunk = chunk.strip().rstrip(".").strip().strip("*").strip()
    if chunk.startswith("$") and chunk.endswith("$"):
        chunk = chunk.strip("$").strip()
    if not chunk:
        return None
    words = _NUMBER_WORDS.fullmatch(chunk)
    if words:
        return words.group(1)
    if _is_prose(chunk):  # "The largest $n$ is 34": the sentence's last expression
        return _last_expression(chunk, len(chunk)) or chunk
    return chunk


_STATES_VALUE = re.compile(r"[\d\\]|^[A-E]$")  # a number, LaTeX, or a choice letter


def _last_phrase(region: str, start: int, max_chars: int) -> str | None:
    found = None
    for m in _PHRASE.finditer(region, start):
        found = m
    if found is None:
        return None
    return _phrase_expression(region[found.end() : found.end() + max_chars])


_DELIM = re.compile(r"\\\$|\$\$|\$|\\\[|\\\]|\\\(|\\\)")
_OPENERS = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
_INLINE = ("$", "\\(")  # inline delimiters: a span of theirs ends at its line
MAX_SPAN_CHARS = 4000
_PROSE_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _spans(region: str) -> list[tuple[int, int, str, bool]]:
    """(start, end, content, readable) of the math spans, in one left-to-right pass.

    An opener waits for its own closer; a span longer than ``MAX_SPAN_CHARS`` is abandoned at
    the delimiter that finds it too long (no rewinding, so the cost stays linear in the text).
    ``\\$`` is a dollar sign, not a delimiter. *Inline math ends at its line*: an inline pair
    (``$..$``, ``\\(..\\)``) whose closer is on a later line is no span (``readable`` False, see
    :func:`_malformed_inline`); one whose content is prose (``$5 per hour ... 20 $``) is
    currency, not math: it is dropped and its closer may open a new span.
    """
    out: list[tuple[int, int, str, bool]] = []
    open_tok: str | None = None
    open_end = open_start = 0
    line_end = -1
    for m in _DELIM.finditer(region):
        tok = m.group(0)
        if tok == "\\$":
            continue
        if open_tok is not None:
            too_long = m.start() - open_end > MAX_SPAN_CHARS
            crossed = open_tok in _INLINE and 0 <= line_end < m.start()
            if tok == _OPENERS[open_tok] and not too_long:
                content = region[open_end : m.start()]
                if not crossed or not _is_prose(content):
                    out.append((open_start, m.end(), content, not crossed))
                    open_tok = None
                    continue
            if not (too_long or crossed):
                continue  # another delimiter inside the span
            open_tok = None
        if tok in _OPENERS:
            open_tok, open_start, open_end = tok, m.start(), m.end()
            # the opener's line end, looked for no further than a span may reach (linear)
            line_end = region.find("\n", open_end, open_end + MAX_SPAN_CHARS + 1)
    return out


def _malformed_inline(opener: str, content: str) -> bool:
    """An inline pair (``$``, ``\\(``) whose content crosses a line and is not prose."""
    return opener in _INLINE and "\n" in content and not _is_prose(content)


def _last_expression(region: str, max_chars: int) -> str | None:
    """Rule 5: the later of the last math span and the last plain number outside spans.

    A line-crossing inline pair (no span, see :func:`_spans`) hides its numbers, and when it
    ends last the rule finds no answer (not an earlier number).
    """
    best_span: tuple[int, str] | None = None
    best_num: tuple[int, str] | None = None
    bad_end = -1
    cursor = 0
    for start, end, content, readable in _spans(region):
        for n in _NUMBER.finditer(region, cursor, start):
            best_num = (n.end(), n.group(0))
        cursor = end
        if not readable:
            bad_end = end
            continue
        inner = content.strip()
        if inner and len(inner) <= max_chars and not _is_prose(inner):
            best_span = (end, inner)
    for n in _NUMBER.finditer(region, cursor):
        best_num = (n.end(), n.group(0))
    if bad_end > max(best_span[0] if best_span else -1, best_num[0] if best_num else -1):
        return None
    if best_span and (best_num is None or best_span[0] >= best_num[0]):
        return best_span[1]
    return best_num[1].rstrip(",") if best_num else None


_COMMAND = re.compile(
    r"\\(?:text|mathrm|textbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}|\\[A-Za-z]+"
)


_BARE = re.compile(r"[^\n$]*")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}|\\[\[\]()]")


def _is_prose(span: str) -> bool:
    """A "math" span that is prose (``$5 and then $``): two or more words outside commands."""
    return len(_PROSE_WORD.findall(_COMMAND.sub(" ", span))) >= 2


def extract_answer(
    completion: str,
    *,
    mode: str = "auto",
    last_number_fallback: bool | None = None,
    max_chars: int = 10_000,
) -> str | None:
    """The final answer string of a completion (rules in the module docstring), or None.

    ``last_number_fallback`` is the older switch: True selects ``mode="auto"``, False
    ``mode="answer"``; None (default) leaves ``mode`` as given.
    """
    if last_number_fallback is not None:
        mode = "auto" if last_number_fallback else "answer"
    if mode not in MODES:
        raise ValueError(f"extract_answer: mode must be one of {MODES}, got {mode!r}")
    region = answer_region(completion)
    if region is None:
        return None
    region = region[-MAX_TAIL_CHARS:]
    group = _box_group(region, max_chars)
    if mode == "boxed":
        return None if group is None else ", ".join(c.strip() for c in group[1])
    if group is not None:
        end, contents = group
        later = _last_phrase(region, end, max_chars)
        if later is not None and "\\boxed" not in later and _STATES_VALUE.search(later):
            return later  # "... The final answer is 7." restates (and overrides) the box
        return ", ".join(c.strip() for c in contents)
    start = region.rfind("<answer>")
    if start >= 0:
        m = _ANSWER_TAG.match(region, start)
        if m:
            return m.group(1).strip()
    phrase = _last_phrase(region, 0, max_chars)
    if phrase is not None:
        return phrase
    if mode == "answer":
        return None
    bare = region.strip()
    if (
        bare
        and len(bare) <= 200
        and _BARE.fullmatch(bare)
        and not _WORD.search(_COMMAND.sub(" ", bare))
    ):
        return bare  # the whole response is one expression (``\frac{10}{9}``, ``1 000``)
    return _last_expression(region, max_chars)
