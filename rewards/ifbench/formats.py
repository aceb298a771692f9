"""IFBench ``format:*`` test constraints (allenai/IFBench ``instructions.py``).

* ``format:parentheses``: scanning ``([{`` / ``)]}``, some correctly closed group reached a
  nesting depth of at least 5 (a mismatched closer resets the scan).
* ``format:quotes``: quotes nest at least 3 levels, each level opened by ``"`` or ``'`` and
  closed by the same character.
* ``format:options``: the response is one of the options (letter options like "a), b), c)"
  must match exactly; text options compare stripped of punctuation, case-insensitively).
  Options are split on "/", else on "or", else on ",".
* ``format:newline``: after deleting punctuation, the number of non-empty lines equals the
  number of words.
* ``format:emoji``: every Punkt sentence ends with an emoji (last or second-to-last character
  after deleting punctuation), or the next sentence starts with one.
* ``format:line_indent``: each non-blank line is indented by more spaces than the one before
  (blank lines are dropped with the reference's skip-after-remove quirk).
* ``format:quote_unquote``: with whitespace and literal ``'"'`` removed, no ``""`` and the text
  does not end (ignoring digits and other punctuation) with ``"``.
* ``format:list``: the separator ``sep`` occurs at least twice.
* ``format:thesis``: an ``<i>`` (else ``<em>``) tag, a non-blank thesis up to ``</i>`` (else
  ``</em>``), then non-blank text.
* ``format:sub-bullets``: every piece after a ``*`` contains a ``-``.
* ``format:no_bullets_bullets``: lines before the first ``*`` line hold at least two Punkt
  sentences in total; no text line after the bullets; at least two ``*`` lines.
* ``format:title_case``: every alphabetic token is capitalised (lowercase 1-letter tokens and
  tokens whose first letter is lowercase while the rest is cased fail).
* ``format:output_template``: contains "My Answer:", "My Conclusion:" and "Future Outlook:".
* ``format:no_whitespace``: no whitespace character at all.
"""

from __future__ import annotations

import re
from itertools import pairwise

from rewards.ifeval._core import STR, Constraint
from rewards.ifeval.text_utils import (
    PUNCT_SPACE,
    PUNCTUATION,
    is_emoji,
    punkt_sentences,
    remove_punctuation,
    word_tokenize,
)

_PAIRS = {")": "(", "]": "[", "}": "{"}


def parentheses(value: str) -> bool:
    stack: list[str] = []
    max_depth = 0
    for char in value:
        if char in "([{":
            stack.append(char)
            max_depth = max(max_depth, len(stack))
        elif char in ")]}":
            if stack and stack[-1] == _PAIRS[char]:
                stack.pop()
                if max_depth >= 5 and len(stack) < max_depth:
                    return True
            else:
                stack = []
                max_depth = 0
    return False


def quotes(value: str) -> bool:
    stack: list[str] = []
    reached = depth = 0
    for char in value:
        if stack and char == stack[-1]:
            stack.pop()
            depth -= 1
            if reached - depth >= 3:
                return True
        elif char in "\"'":
            stack.append(char)
            depth += 1
            reached = max(reached, depth)
    return False


_LETTER_OPTIONS = re.compile(r"\W*[aA]\W*[bB]\W*[cC]\W*")


def options(value: str, *, options: str) -> bool:
    strict = _LETTER_OPTIONS.match(options) is not None
    separator = "/" if "/" in options else ("or" if "or" in options else ",")
    choices = [o.strip() for o in options.split(separator)]
    if strict:
        return value in choices
    value = value.strip(PUNCT_SPACE).lower()
    return any(o.strip(PUNCT_SPACE).lower() == value for o in choices)


def newline(value: str) -> bool:
    value = remove_punctuation(value)
    lines = [line for line in value.strip().split("\n") if line != ""]
    return len(lines) == len(value.strip().split())


def _clean(sentence: str) -> str:
    return remove_punctuation(sentence).strip()


def emoji_sentences(value: str) -> bool:
    sentences = punkt_sentences(value)
    for i, sentence in enumerate(sentences):
        stripped = _clean(sentence)
        if not stripped:
            return False
        last = stripped[-1]
        second = stripped[-2] if len(stripped) > 1 else stripped[-1]
        if not is_emoji(last) and not is_emoji(second):
            if i >= len(sentences) - 1:
                return False
            following = _clean(sentences[i + 1])
            if not following or not is_emoji(following[0]):
                return False
    return True


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def line_indent(value: str) -> bool:
    lines = value.split("\n")
    # The reference removes blank lines while iterating over the same list, so the line
    # right after a removed one is not examined; reproduce that walk exactly.
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            lines.remove(lines[i])
        i += 1
    return all(_indent(b) > _indent(a) for a, b in pairwise(lines))


_NOT_QUOTE_PUNCT = "0123456789" + PUNCTUATION.replace('"', "")


def quote_unquote(value: str) -> bool:
    value = value.replace("'\"'", "")
    value = "".join(value.split())
    if '""' in value:
        return False
    stripped = value.strip(_NOT_QUOTE_PUNCT)
    return not (stripped and stripped[-1] == '"')


def special_list(value: str, *, sep: str) -> bool:
    return value.count(sep) >= 2


def thesis(value: str) -> bool:
    index = value.find("<i>")
    if index == -1:
        index = value.find("<em>")
        if index == -1:
            return False
    value = value[index:]
    end = value.find("</i>")
    if end == -1:
        end = value.find("</em>")
        if end == -1:
            return False
    if value[3:end].strip() == "":
        return False
    return value[end + 4 :].strip() != ""


def sub_bullets(value: str) -> bool:
    return all("-" in piece for piece in value.split("*")[1:])


def no_bullets_bullets(value: str) -> bool:
    sentences_open: object = True  # the reference reuses this flag for a sentence list
    count_sentences = count_bullets = 0
    for line in value.split("\n"):
        if line.strip().startswith("*"):
            sentences_open = False
            if count_sentences < 2:
                return False
            count_bullets += 1
        elif sentences_open:
            found = punkt_sentences(line.strip())
            sentences_open = found
            count_sentences += len(found)
        else:
            return False
    return count_bullets >= 2


def title_case(value: str) -> bool:
    for word in word_tokenize(value):
        if not word or not word[0].isalpha():
            continue
        if len(word) == 1:
            if word[0].islower():
                return False
            continue
        if word[0].isupper() and word[1:].islower():
            continue
        if word[0].islower() and (word[1:].isupper() or word[1:].islower()):
            return False
    return True


def output_template(value: str) -> bool:
    return all(k in value for k in ("My Answer:", "My Conclusion:", "Future Outlook:"))


def no_whitespace(value: str) -> bool:
    return not any(char.isspace() for char in value)


CONSTRAINTS = [
    Constraint("format:parentheses", parentheses),
    Constraint("format:quotes", quotes),
    Constraint("format:options", options, {"options": STR}),
    Constraint("format:newline", newline),
    Constraint("format:emoji", emoji_sentences),
    Constraint("format:line_indent", line_indent),
    Constraint("format:quote_unquote", quote_unquote),
    Constraint("format:list", special_list, {"sep": STR}),
    Constraint("format:thesis", thesis),
    Constraint("format:sub-bullets", sub_bullets),
    Constraint("format:no_bullets_bullets", no_bullets_bullets),
    Constraint("format:title_case", title_case),
    Constraint("format:output_template", output_template),
    Constraint("format:no_whitespace", no_whitespace),
]
