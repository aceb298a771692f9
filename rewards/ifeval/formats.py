"""IFEval detectable content / format, combination and start-end checks.

Semantics follow google-research ``instruction_following_eval/instructions.py``; the regex
scans with a leading ``\\s*`` or a lazy ``.*?`` are re-implemented as linear scans with the
same results, so hostile inputs (long runs of whitespace or brackets) stay linear-time.

* ``detectable_content:number_placeholders``: at least N ``[...]`` placeholders (``\\[.*?\\]``).
* ``detectable_content:postscript``: a line contains the marker (``P.S.`` and ``P.P.S`` match
  with optional spaces, case-insensitive; other markers as a lowercase regex).
* ``detectable_format:number_bullet_lists``: exactly N lines starting with ``*`` (not ``**``)
  or ``-`` (``^\\s*\\*[^\\*].*$`` plus ``^\\s*-.*$``, multiline).
* ``detectable_format:constrained_response``: contains "My answer is yes." / "no." / "maybe.".
* ``detectable_format:number_highlighted_sections``: at least N non-empty ``*x*`` spans, each
  ``**x**`` counting once more.
* ``detectable_format:multiple_sections``: splitting on ``\\s?<splitter>\\s?\\d+\\s?`` gives at
  least N sections after the first piece.
* ``detectable_format:json_format``: the stripped response, minus a ```json fence, parses.
* ``detectable_format:title``: a non-empty ``<<title>>`` on one line.
* ``combination:two_responses``: exactly two different non-empty responses around ``******``.
* ``combination:repeat_prompt``: starts (case-insensitive, stripped) with the request.
* ``startend:end_checker``: ends with the phrase (stripped, quotes stripped, lowercased).
* ``startend:quotation``: wrapped in double quotes.
"""

from __future__ import annotations

import json
import re

from rewards.ifeval._core import INT, STR, Constraint
from rewards.ifeval.keywords import compile_keyword


def count_placeholders(value: str) -> int:
    """Non-overlapping ``\\[.*?\\]`` matches (``.`` excludes newline), in linear time."""
    count, i, n = 0, 0, len(value)
    while i < n:
        start = value.find("[", i)
        if start < 0:
            break
        line_end = value.find("\n", start)
        if line_end < 0:
            line_end = n
        close = value.find("]", start + 1, line_end)
        if close < 0:
            i = line_end + 1  # no later "[" on this line can close either
            continue
        count += 1
        i = close + 1
    return count


def number_placeholders(value: str, *, num_placeholders: int) -> bool:
    return count_placeholders(value) >= num_placeholders


def postscript(value: str, *, postscript_marker: str) -> bool:
    marker = postscript_marker.strip()
    value = value.lower()
    if marker == "P.P.S":
        pattern = re.compile(r"p\.\s?p\.\s?s")
    elif marker == "P.S.":
        pattern = re.compile(r"p\.\s?s\.")
    else:
        pattern = compile_keyword(marker.lower())
    # reference: re.findall(r"\s*" + marker + r".*$", value, re.M); the \s* and .*$ parts
    # can match empty, so the verdict is whether the marker occurs at all.
    return pattern.search(value) is not None


def _count_line_items(value: str, marker: str, need_non_marker_next: bool) -> int:
    """Matches of ``^\\s*<marker>...`` (re.M, findall) without regex backtracking.

    ``\\s*`` may cross newlines; a match ends at the end of the line holding the character
    after the marker (``[^*]`` may itself be a newline, pulling in the next line).
    """
    n, i, count = len(value), 0, 0
    while i <= n:
        q = i
        while q < n and value[q].isspace():
            q += 1
        ok = q < n and value[q] == marker
        if ok and need_non_marker_next:
            ok = q + 1 < n and value[q + 1] != marker
        if ok:
            count += 1
            end_from = q + 2 if need_non_marker_next else q + 1
            end = value.find("\n", end_from) if end_from <= n else -1
            if end < 0:
                break
            # a following match must start at a line start: position end is "\n"; the
            # regex resumes at `end`, which is not a line start, so the next is end + 1
            i = end + 1
            continue
        nxt = value.find("\n", q)
        if nxt < 0:
            break
        i = nxt + 1
    return count


def number_bullet_lists(value: str, *, num_bullets: int) -> bool:
    stars = _count_line_items(value, "*", True)
    dashes = _count_line_items(value, "-", False)
    return stars + dashes == num_bullets


CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def constrained_response(value: str) -> bool:
    value = value.strip()
    return any(option in value for option in CONSTRAINED_OPTIONS)


_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def count_highlights(value: str) -> int:
    count = sum(1 for h in _HIGHLIGHT.findall(value) if h.strip("*").strip())
    count += sum(
        1
        for h in _DOUBLE_HIGHLIGHT.findall(value)
        if h.removeprefix("**").removesuffix("**").strip()
    )
    return count


def number_highlighted_sections(value: str, *, num_highlights: int) -> bool:
    return count_highlights(value) >= num_highlights


def multiple_sections(value: str, *, section_spliter: str, num_sections: int) -> bool:
    splitter = section_spliter.strip()
    try:
        pattern = re.compile(r"\s?" + splitter + r"\s?\d+\s?")
    except re.error:
        pattern = re.compile(r"\s?" + re.escape(splitter) + r"\s?\d+\s?")
    return len(pattern.split(value)) - 1 >= num_sections


def json_format(value: str) -> bool:
    value = (
        value.strip()
        .removeprefix("```json")
        .removeprefix("```Json")
        .removeprefix("```JSON")
        .removeprefix("```")
        .removesuffix("```")
        .strip()
    )
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def title(value: str) -> bool:
    """A ``<<[^\\n]+>>`` match whose inside is not blank (one candidate per line)."""
    for line in value.split("\n"):
        start = line.find("<<")
        if start < 0:
            continue
        end = line.rfind(">>")
        if end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def two_responses(value: str) -> bool:
    valid = []
    parts = value.split("******")
    for index, part in enumerate(parts):
        if not part.strip():
            if index != 0 and index != len(parts) - 1:
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def repeat_prompt(value: str, *, prompt_to_repeat: str) -> bool:
    return value.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(value: str, *, end_phrase: str) -> bool:
    return value.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def quotation(value: str) -> bool:
    value = value.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


CONSTRAINTS = [
    Constraint(
        "detectable_content:number_placeholders",
        number_placeholders,
        {"num_placeholders": INT},
    ),
    Constraint("detectable_content:postscript", postscript, {"postscript_marker": STR}),
    Constraint("detectable_format:number_bullet_lists", number_bullet_lists, {"num_bullets": INT}),
    Constraint("detectable_format:constrained_response", constrained_response),
    Constraint(
        "detectable_format:number_highlighted_sections",
        number_highlighted_sections,
        {"num_highlights": INT},
    ),
    Constraint(
        "detectable_format:multiple_sections",
        multiple_sections,
        {"section_spliter": STR, "num_sections": INT},
    ),
    Constraint("detectable_format:json_format", json_format),
    Constraint("detectable_format:title", title),
    Constraint("combination:two_responses", two_responses),
    Constraint(
        "combination:repeat_prompt",
        repeat_prompt,
        {"prompt_to_repeat": STR},
        prompt_fallback="prompt_to_repeat",
    ),
    Constraint("startend:end_checker", end_checker, {"end_phrase": STR}),
    Constraint("startend:quotation", quotation),
]
