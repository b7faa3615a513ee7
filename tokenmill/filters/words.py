"""Words, sentences and stop words per language, for the quality rules (filters/quality.py).

In: a language code (`doc.language`, ISO 639-1 as the language stage sets it). Out:
`language_tools(code)`, a `LanguageTools` with `words(text) -> list[str]`,
`sentences(text) -> list[str]` and `stop_word_count(words) -> int | None`. Built once per
language per process (cached): a worker loads each spaCy pipeline once.

  - spaced languages: datatrove's tokenizer for the language (spaCy blank pipeline, no
    model download), or spaCy's multilingual "xx" tokenizer when none is installed;
  - stop words: English uses Gopher's 8 ("the", "be", "to", "of", "and", "that", "have",
    "with"), matched as datatrove matches them (case-sensitive); other languages use
    spaCy's stop-word list for that language, matched lowercased, so German pages are not
    judged by English stop words; a language without a list has none (`stop_word_count`
    returns None and the rule is skipped);
  - languages written without spaces (`NO_SPACE_LANGUAGES`: zh, ja, th, lo, km, my, bo,
    yue, wuu): every CJK/Thai/... character is one word (spaCy's Chinese "char"
    segmentation; jieba/SudachiPy are not installed), sentences end at terminal
    punctuation (。！？ ...), no stop words. quality.py says which rules they skip.

What a worker pays to build them, and why it is small (a Ray worker pays it once per process,
so it decides how well a run scales with workers; measured on this machine, CPU seconds):
  - `import spacy` imports thinc, which imports torch when it is installed (1.5 of 2.4 s) for
    its torch-backed layers; a blank pipeline never uses them, so while spaCy is imported here
    `torch` is hidden (thinc then says has_torch=False). Nothing is hidden when torch or spaCy is
    already imported, so a process that needs thinc's torch layers imports torch or spaCy first;
  - `Language()` imports every package that registers a `spacy_factories` entry point (e.g.
    presidio-analyzer's, which imports transformers and torch: 3.2 s); the blank pipelines here
    need only spaCy's built-in tokenizer and sentencizer, so they are built with that registry's
    entry points switched off (for the duration of the build, in this process).
Together ~1 CPU-s instead of 6-7 per process (spaCy and the English pipeline), with the same
tokens (tests/test_words_setup.py).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import regex

NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu"})
_NO_SPACE_CHAR = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
_CHAR_WORDS = regex.compile(rf"[{_NO_SPACE_CHAR}]|[^\s{_NO_SPACE_CHAR}]+")


@dataclass
class LanguageTools:
    """How one language splits words and sentences, and its stop words (None: it has none)."""

    language: str
    no_spaces: bool
    words: Callable[[str], list[str]]
    sentences: Callable[[str], list[str]]
    stop_words: frozenset | None

    def stop_word_count(self, words: list[str]) -> int | None:
        """How many distinct stop words occur among `words`; None when the language has no list."""
        if self.stop_words is None:
            return None
        seen = set(words) if self.language == "en" else {w.lower() for w in words}
        return len(self.stop_words & seen)


def import_spacy():
    """`import spacy` without thinc importing torch, unless torch (or spaCy) is already imported."""
    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # `import torch` raises ImportError: thinc.compat sets has_torch = False
    try:
        import spacy
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return spacy


@contextmanager
def builtin_factories_only():
    """spaCy pipelines built inside this block skip the `spacy_factories` entry points."""
    util = import_spacy().util
    registry = util.registry._entry_point_factories
    saved = registry.entry_points
    registry.entry_points = False
    try:
        yield
    finally:
        registry.entry_points = saved


MAX_SPACY_STRINGS = 200_000  # rebuild past this many strings: ~0.4 kB each with its lexeme (measured), ~90 MB


class _SpacyWords:
    """datatrove's spaCy blank pipeline for a language, called without memory zones.

    In: text; out: its words or sentences, stripped, empty ones dropped (as datatrove's
    tokenizer gives them). datatrove wraps every call in `memory_zone()`, which forgets the
    vocabulary after each document, so most of its time goes to re-creating lexemes; here
    the vocabulary stays warm and the pipeline is rebuilt when its string store passes
    MAX_SPACY_STRINGS, so memory stays bounded in long-lived workers. Same tokens either way.
    """

    def __init__(self, tok):
        self.tok = tok  # a datatrove SpaCyTokenizer

    def _nlp(self, text: str):
        nlp = self.tok._tokenizer
        if nlp is None or len(nlp.vocab.strings) > MAX_SPACY_STRINGS:
            self.tok._tokenizer = None
            with builtin_factories_only():
                nlp = self.tok.tokenizer
        nlp.max_length = len(text) + 10
        return nlp

    def words(self, text: str) -> list[str]:
        return [w for w in (t.text.strip() for t in self._nlp(text).tokenizer(text)) if w]

    def sentences(self, text: str) -> list[str]:
        return [s for s in (sent.text.strip() for sent in self._nlp(text)(text).sents) if s]


@lru_cache(maxsize=None)
def language_tools(language: str) -> LanguageTools:
    """In: a language code (None or "" mean English). Out: its tools, built once per process."""
    from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS
    from datatrove.utils.word_tokenizers import SpaCyTokenizer, WhitespaceTokenizer, load_word_tokenizer

    lang = (language or "en").lower()
    regex_sentences = WhitespaceTokenizer().sent_tokenize  # terminal punctuation incl. 。！？
    if lang in NO_SPACE_LANGUAGES:
        return LanguageTools(lang, True, _CHAR_WORDS.findall, regex_sentences, None)
    import_spacy()
    try:
        tok = load_word_tokenizer(lang)
        with builtin_factories_only():
            tok.word_tokenize("probe text.")  # missing optional dependencies fail here, not mid-run
    except (ImportError, ValueError, OSError, KeyError):
        tok = None
    if not isinstance(tok, SpaCyTokenizer):  # none, or one needing packages we do not ship
        tok = SpaCyTokenizer("xx")
    spacy_words = _SpacyWords(tok)
    if lang == "en":
        stop = frozenset(STOP_WORDS)
    else:
        try:
            stop = frozenset(import_spacy().util.get_lang_class(lang).Defaults.stop_words) or None
        except (ImportError, KeyError, AttributeError):  # spaCy has no such language
            stop = None
    return LanguageTools(lang, False, spacy_words.words, spacy_words.sentences, stop)
