"""Quality heuristics: Gopher repetition, Gopher quality, C4 and FineWeb rules, FineWeb's thresholds.

In: a Doc with `text` (and `language`, set by the language stage). Out: keep, or the name of
the first rule that failed; every score a family computed is kept on `doc.scores` under a
dotted name ("gopher_quality.mean_word_length", "fineweb.line_punct_ratio", ...), so
thresholds can be studied later without recomputing. Families run in FineWeb's order
(gopher_repetition -> gopher_quality -> c4 -> fineweb) and the first failing family stops
the document; each family computes all its scores before deciding. Each family and each
threshold can be switched off (`enabled: false`, a threshold `null`). The rules and
thresholds are datatrove's (`GopherRepetitionFilter`, `GopherQualityFilter`,
`C4QualityFilter(filter_no_terminal_punct=False)` as FineWeb ran it, `FineWebQualityFilter`),
computed with datatrove's helpers (n-gram duplicate counters, punctuation sets, C4's
citation/policy patterns); a test checks the verdicts equal datatrove's on English text.
The C4 family edits the text as C4 does (drops lines without enough words, with
"javascript" or cookie/policy notices, removes "[1]" citations); `c4.lines_removed` counts it.

Language (`doc.language`, else `default_language`) decides word splitting and stop words;
one splitter per language, cached per process:
  - spaced languages: datatrove's tokenizer for the language (spaCy blank pipeline, no
    model download), or spaCy's multilingual "xx" tokenizer when none is installed;
  - Gopher stop words: English uses Gopher's 8 ("the", "be", "to", "of", "and", "that",
    "have", "with"); other languages use spaCy's stop-word list for that language (German:
    543 words), so German pages are not dropped for lacking English stop words; a language
    without a list skips the rule (no score `gopher_quality.stop_word_count`);
  - languages written without spaces (zh, ja, th, lo, km, my, bo, yue, wuu): every CJK/Thai/...
    character is one word (spaCy's Chinese "char" segmentation; jieba/SudachiPy are not
    installed). So: `mean_word_length` is recorded but not applied (always ~1), the
    stop-word rule is skipped, C4's `min_words_per_line` and `max_word_length` are skipped
    (C4 counts whitespace words), sentences are split on terminal punctuation (。！？ ...).
    Word counts, n-gram repetition and FineWeb's ratios apply unchanged, on characters.
Measured: of 94 real German pages (shared/data extraction set, trafilatura text), 68 are kept
with German word splitting and stop words, 2 when judged as English (63 "too_few_stop_words").
Measured on 187 real pages (trafilatura text of shared/data extraction + WARC pages, mean
4.4 kB): same keep/drop as datatrove's four filters on all 58 English pages; ~77 docs/s
(0.34 MB/s) on one core, datatrove's filters ~12 docs/s on the same pages (its spaCy calls
forget the vocabulary after every document, see `_SpacyWords`). Most time is spaCy tokenizing.

Longer than 300 lines because the four rule families and their configs belong together:
one recipe, read top to bottom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from functools import lru_cache

import regex

from tokenmill.doc import Doc

NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo", "yue", "wuu"})
_NO_SPACE_CHAR = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}"
_CHAR_WORDS = regex.compile(rf"[{_NO_SPACE_CHAR}]|[^\s{_NO_SPACE_CHAR}]+")


def _check(section: str, obj, fracs=(), positives=()) -> None:
    for name in fracs:
        v = getattr(obj, name)
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"quality.{section}.{name} must be in [0, 1] or null, got {v}")
    for name in positives:
        v = getattr(obj, name)
        if v is not None and v < 0:
            raise ValueError(f"quality.{section}.{name} must be >= 0 or null, got {v}")


@dataclass(frozen=True)
class GopherRepetitionRules:
    enabled: bool = True
    dup_para_frac: float | None = 0.3
    dup_para_char_frac: float | None = 0.2
    dup_line_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    top_2_gram_frac: float | None = 0.20
    top_3_gram_frac: float | None = 0.18
    top_4_gram_frac: float | None = 0.16
    dup_5_gram_frac: float | None = 0.15
    dup_6_gram_frac: float | None = 0.14
    dup_7_gram_frac: float | None = 0.13
    dup_8_gram_frac: float | None = 0.12
    dup_9_gram_frac: float | None = 0.11
    dup_10_gram_frac: float | None = 0.10

    def __post_init__(self):
        _check("gopher_repetition", self, fracs=[f.name for f in fields(self) if f.name != "enabled"])


@dataclass(frozen=True)
class GopherQualityRules:
    enabled: bool = True
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3.0
    max_avg_word_length: float | None = 10.0
    max_symbol_word_ratio: float | None = 0.1  # "#" and "..." per word
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2

    def __post_init__(self):
        _check("gopher_quality", self, fracs=["max_bullet_lines_ratio", "max_ellipsis_lines_ratio",
                                              "min_alpha_words_ratio"],
               positives=["min_doc_words", "max_doc_words", "min_avg_word_length", "max_avg_word_length",
                          "max_symbol_word_ratio", "min_stop_words"])


@dataclass(frozen=True)
class C4Rules:
    enabled: bool = True
    remove_citations: bool = True
    filter_no_terminal_punct: bool = False  # FineWeb ran C4 without it
    min_num_sentences: int | None = 5
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    def __post_init__(self):
        _check("c4", self, positives=["min_num_sentences", "min_words_per_line", "max_word_length"])


@dataclass(frozen=True)
class FineWebRules:
    enabled: bool = True
    line_punct_thr: float | None = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float | None = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float | None = 0.01
    new_line_ratio: float | None = 0.3

    def __post_init__(self):
        _check("fineweb", self, fracs=["line_punct_thr", "short_line_thr", "char_duplicates_ratio"],
               positives=["short_line_length", "new_line_ratio"])


@dataclass(frozen=True)
class QualityConfig:
    gopher_repetition: GopherRepetitionRules = field(default_factory=GopherRepetitionRules)
    gopher_quality: GopherQualityRules = field(default_factory=GopherQualityRules)
    c4: C4Rules = field(default_factory=C4Rules)
    fineweb: FineWebRules = field(default_factory=FineWebRules)
    default_language: str = "en"  # for documents without `language`


@dataclass
class LanguageTools:
    """How one language splits words and sentences, and its stop words (None: rule skipped)."""

    language: str
    no_spaces: bool
    words: object  # str -> list[str]
    sentences: object  # str -> list[str]
    stop_words: frozenset | None


MAX_SPACY_STRINGS = 200_000  # rebuild past this many strings: ~0.4 kB each with its lexeme (measured), ~90 MB


class _SpacyWords:
    """datatrove's spaCy blank pipeline for a language, called without memory zones.

    datatrove wraps every call in `memory_zone()`, which forgets the vocabulary after each
    document: measured 15 docs/s on 4.4 kB pages, 70% of it re-creating lexemes. With a warm
    vocabulary the same tokens come out at ~175 docs/s; the pipeline is rebuilt when its
    string store passes MAX_SPACY_STRINGS, so memory stays bounded in long-lived workers.
    """

    def __init__(self, tok):
        self.tok = tok  # a datatrove SpaCyTokenizer

    def _nlp(self, text: str):
        nlp = self.tok.tokenizer
        if len(nlp.vocab.strings) > MAX_SPACY_STRINGS:
            self.tok._tokenizer = None
            nlp = self.tok.tokenizer
        nlp.max_length = len(text) + 10
        return nlp

    def words(self, text: str) -> list[str]:
        return [w for w in (t.text.strip() for t in self._nlp(text).tokenizer(text)) if w]

    def sentences(self, text: str) -> list[str]:
        return [s for s in (sent.text.strip() for sent in self._nlp(text)(text).sents) if s]


@lru_cache(maxsize=None)
def language_tools(language: str) -> LanguageTools:
    """Built once per language per process (a spaCy blank pipeline: ~0.3 s the first time)."""
    from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS
    from datatrove.utils.word_tokenizers import SpaCyTokenizer, WhitespaceTokenizer, load_word_tokenizer

    lang = (language or "en").lower()
    regex_sentences = WhitespaceTokenizer().sent_tokenize  # terminal punctuation incl. 。！？
    if lang in NO_SPACE_LANGUAGES:
        return LanguageTools(lang, True, _CHAR_WORDS.findall, regex_sentences, None)
    try:
        tok = load_word_tokenizer(lang)
        tok.word_tokenize("probe text.")  # missing optional dependencies fail here, not mid-run
    except (ImportError, ValueError, OSError, KeyError):
        tok = None
    if not isinstance(tok, SpaCyTokenizer):  # none, or one needing packages we do not ship
        tok = SpaCyTokenizer("xx")
    spacy_words = _SpacyWords(tok)
    words, sentences = spacy_words.words, spacy_words.sentences
    if lang == "en":
        stop = frozenset(STOP_WORDS)
    else:
        try:
            import spacy.util

            stop = frozenset(spacy.util.get_lang_class(lang).Defaults.stop_words) or None
        except (ImportError, KeyError, AttributeError):  # spaCy has no such language
            stop = None
    return LanguageTools(lang, False, words, sentences, stop)


def gopher_repetition(text: str, words: list[str], r: GopherRepetitionRules, scores: dict) -> str | None:
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate, find_duplicates, find_top_duplicate, get_n_grams)

    n_chars = len(text)
    paragraphs = re.split(r"\n{2,}", text.strip())
    dup, dup_chars = find_duplicates(paragraphs)
    scores["dup_para_frac"], scores["dup_para_char_frac"] = dup / len(paragraphs), dup_chars / n_chars
    lines = re.split(r"\n+", text)
    dup, dup_chars = find_duplicates(lines)
    scores["dup_line_frac"], scores["dup_line_char_frac"] = dup / len(lines), dup_chars / n_chars
    for n in (2, 3, 4):
        grams = get_n_grams(words, n)
        scores[f"top_{n}_gram_frac"] = find_top_duplicate(grams) / n_chars if grams else 0.0
    for n in range(5, 11):
        scores[f"dup_{n}_gram_frac"] = find_all_duplicate(words, n) / n_chars
    checks = [("dup_para_frac", "too_many_duplicate_paragraphs"),
              ("dup_para_char_frac", "too_many_duplicate_paragraph_chars"),
              ("dup_line_frac", "too_many_duplicate_lines"),
              ("dup_line_char_frac", "too_many_duplicate_line_chars")]
    checks += [(f"top_{n}_gram_frac", f"top_{n}_gram_too_frequent") for n in (2, 3, 4)]
    checks += [(f"dup_{n}_gram_frac", f"too_many_duplicate_{n}_grams") for n in range(5, 11)]
    for key, reason in checks:
        limit = getattr(r, key)
        if limit and scores[key] > limit:
            return reason
    return None


def gopher_quality(text: str, words: list[str], tools: LanguageTools, r: GopherQualityRules,
                   scores: dict) -> str | None:
    from datatrove.utils.text import PUNCTUATION_SET

    n_words = max(1, len(words))
    content = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
    lines = text.splitlines() or [""]
    s = scores
    s["word_count"] = len(content)
    s["mean_word_length"] = sum(map(len, content)) / len(content) if content else 0.0
    s["hash_word_ratio"] = text.count("#") / n_words
    s["ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / n_words
    s["bullet_line_ratio"] = sum(ln.lstrip().startswith(("•", "-")) for ln in lines) / len(lines)
    s["ellipsis_line_ratio"] = sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
    s["alpha_word_ratio"] = sum(any(c.isalpha() for c in w) for w in words) / n_words
    if tools.stop_words is not None:
        lowered = {w.lower() for w in words} if tools.language != "en" else set(words)
        s["stop_word_count"] = len(tools.stop_words & lowered)
    if r.min_doc_words and s["word_count"] < r.min_doc_words:
        return "too_few_words"
    if r.max_doc_words and s["word_count"] > r.max_doc_words:
        return "too_many_words"
    if not tools.no_spaces:  # one character per "word" in zh/ja/th: mean length is meaningless
        if r.min_avg_word_length and s["mean_word_length"] < r.min_avg_word_length:
            return "mean_word_length_too_short"
        if r.max_avg_word_length and s["mean_word_length"] > r.max_avg_word_length:
            return "mean_word_length_too_long"
    if r.max_symbol_word_ratio and s["hash_word_ratio"] > r.max_symbol_word_ratio:
        return "too_many_hashes"
    if r.max_symbol_word_ratio and s["ellipsis_word_ratio"] > r.max_symbol_word_ratio:
        return "too_many_ellipses"
    if r.max_bullet_lines_ratio and s["bullet_line_ratio"] > r.max_bullet_lines_ratio:
        return "too_many_bullet_lines"
    if r.max_ellipsis_lines_ratio and s["ellipsis_line_ratio"] > r.max_ellipsis_lines_ratio:
        return "too_many_lines_ending_in_ellipsis"
    if r.min_alpha_words_ratio and s["alpha_word_ratio"] < r.min_alpha_words_ratio:
        return "too_few_alphabetic_words"
    if r.min_stop_words and "stop_word_count" in s and s["stop_word_count"] < r.min_stop_words:
        return "too_few_stop_words"
    return None


def c4_lines(text: str, tools: LanguageTools, r: C4Rules, scores: dict) -> tuple[str | None, str]:
    """C4's line rules. Returns (reason or None, the text with the failing lines removed)."""
    from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS

    kept, n_sentences, n_lines = [], 0, 0
    check_words = not tools.no_spaces  # whitespace words mean nothing in zh/ja/th
    reason = None
    for line in text.splitlines():
        n_lines += 1
        line = line.strip()
        words = line.split()
        if check_words and r.max_word_length and any(len(w) > r.max_word_length for w in words):
            continue
        if r.remove_citations:
            line = CITATION_REGEX.sub("", line)
        if r.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
            continue
        if check_words and r.min_words_per_line and len(words) < r.min_words_per_line:
            continue
        if not line:
            continue
        lower = line.lower()
        if r.filter_lorem_ipsum and "lorem ipsum" in lower:
            reason = reason or "contains_lorem_ipsum"
        if r.filter_javascript and "javascript" in lower:
            continue
        if r.filter_curly_bracket and "{" in line:
            reason = reason or "contains_curly_bracket"
        if r.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
            continue
        n_sentences += len(tools.sentences(line)) if r.min_num_sentences else 1
        kept.append(line)
    scores["sentence_count"] = n_sentences
    scores["lines_removed"] = n_lines - len(kept)
    if reason is None and r.min_num_sentences and n_sentences < r.min_num_sentences:
        reason = "too_few_sentences"
    return reason, "\n".join(kept).strip()


def fineweb(text: str, tools: LanguageTools, r: FineWebRules, scores: dict) -> str | None:
    from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
    from datatrove.utils.text import TERMINAL_PUNCTUATION

    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return "no_text"
    stop_chars = tuple(TERMINAL_PUNCTUATION)
    s = scores
    s["line_punct_ratio"] = sum(ln.endswith(stop_chars) for ln in lines) / len(lines)
    s["short_line_ratio"] = sum(len(ln) <= r.short_line_length for ln in lines) / len(lines)
    s["char_dup_ratio"] = find_duplicates(lines)[1] / max(1, len(text.replace("\n", "")))
    s["list_ratio"] = text.count("\n") / max(1, len(tools.words(text)))
    if r.line_punct_thr is not None and s["line_punct_ratio"] < r.line_punct_thr and not (
        s["line_punct_ratio"] == 0 and r.line_punct_exclude_zero
    ):
        return "too_few_lines_ending_in_punctuation"
    if r.short_line_thr is not None and s["short_line_ratio"] > r.short_line_thr:
        return "too_many_short_lines"
    if r.char_duplicates_ratio is not None and s["char_dup_ratio"] > r.char_duplicates_ratio:
        return "too_much_text_in_duplicate_lines"
    if r.new_line_ratio is not None and s["list_ratio"] > r.new_line_ratio:
        return "too_many_newlines_per_word"
    return None


class QualityFilter:
    """`filter(doc)`: scores on `doc.scores`, keep or the first failing rule's reason."""

    name = "quality"

    def __init__(self, config: QualityConfig | None = None):
        self.config = config = config if config is not None else QualityConfig()

    def setup(self) -> None:
        language_tools(self.config.default_language)  # fail early on a bad default

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        cfg = self.config
        text = doc.text
        if not text or not text.strip():
            return False, "no_text"
        tools = language_tools(doc.language or cfg.default_language)
        words = tools.words(text) if cfg.gopher_repetition.enabled or cfg.gopher_quality.enabled else []

        def record(family: str, scores: dict) -> None:
            doc.scores.update({f"{family}.{k}": float(v) for k, v in scores.items()})

        if cfg.gopher_repetition.enabled:
            reason = gopher_repetition(text, words, cfg.gopher_repetition, scores := {})
            record("gopher_repetition", scores)
            if reason:
                return False, reason
        if cfg.gopher_quality.enabled:
            reason = gopher_quality(text, words, tools, cfg.gopher_quality, scores := {})
            record("gopher_quality", scores)
            if reason:
                return False, reason
        if cfg.c4.enabled:
            reason, new_text = c4_lines(text, tools, cfg.c4, scores := {})
            record("c4", scores)
            if reason:
                return False, reason
            doc.text = text = new_text
        if cfg.fineweb.enabled:
            reason = fineweb(text, tools, cfg.fineweb, scores := {})
            record("fineweb", scores)
            if reason:
                return False, reason
        return True
