"""Quality heuristics as rule tables: Gopher repetition, Gopher quality, C4 and FineWeb, FineWeb's thresholds.

In: a Doc with `text` (and `language`, set by the language stage). Out: True (keep) or
(False, reason) naming the first rule that failed; C4 may shorten `doc.text` (below). Every
score a family computed is kept on `doc.scores` under a dotted name
("gopher_quality.mean_word_length", "fineweb.line_punct_ratio", ...), also when its rule is
off, so thresholds can be studied later without recomputing.

A family is a scorer (text in, its scores out) and a table of `Rule(score, op, limit,
reason)` rows: drop with `reason` when `scores[score] op config.<limit>`, rows checked in
order. Families run in FineWeb's order (`FAMILIES`: gopher_repetition -> gopher_quality ->
c4 -> fineweb); each computes all its scores before deciding, and the first failing family
stops the document (later families add no scores). A family is switched off with
`enabled: false`, a rule with its threshold `null`; in the Gopher and C4 families a
threshold of 0 turns its rule off too (datatrove tests those thresholds by truth), in
FineWeb's 0 is a threshold. The rules and thresholds are datatrove's
(`GopherRepetitionFilter`, `GopherQualityFilter`, `C4QualityFilter(filter_no_terminal_punct=
False)` as FineWeb ran it, `FineWebQualityFilter`), computed with datatrove's helpers (n-gram
duplicate counters, punctuation sets, C4's citation/policy patterns); a test checks the
verdicts equal datatrove's on English text.

C4 also edits the text as C4 does: lines without enough words, with "javascript" or a
cookie/policy notice go, "[1]" citations are removed (`c4.lines_removed` counts the lines);
a kept document leaves C4 with the edited text, and FineWeb judges that.

Words, sentences and stop words come from `filters/words.py`, per `doc.language` (else
`default_language`). For languages written without spaces (zh, ja, th, ...) one character is
one word, so `mean_word_length` is recorded but not judged, the stop-word rule is skipped
(no stop words, no score), and C4's `min_words_per_line` and `max_word_length` are skipped
(C4 counts whitespace words); word counts, n-gram repetition and FineWeb's ratios apply
unchanged, on characters.

Longer than 300 lines because the four families' configs, tables and scorers are one recipe,
read top to bottom.
"""

# Measured once on trafilatura text of shared/data pages (no bench script holds these yet):
# 68 of 94 German pages kept with German words and stop words, 2 when judged as English; same
# keep/drop as datatrove's four filters on all 58 English pages; most of the time is spaCy.

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from typing import Callable, NamedTuple

from tokenmill.doc import Doc
from tokenmill.filters.words import LanguageTools, language_tools


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


class Rule(NamedTuple):
    """Drop with `reason` when `scores[score] op getattr(rules, limit)` (op: "<" or ">")."""

    score: str
    op: str
    limit: str
    reason: str


class Scored(NamedTuple):
    """What a family's scorer returns: its scores and what else decides, beside its table."""

    scores: dict
    skip: frozenset = frozenset()  # scores not judged for this document
    reason: str | None = None  # a drop decided before the table (C4's line rules, no text left)
    text: str | None = None  # the edited text (C4)


class Page:
    """The text being judged and its language's tools; its words are split once, on first use."""

    def __init__(self, text: str, tools: LanguageTools):
        self.text, self.tools = text, tools

    @cached_property
    def words(self) -> list[str]:
        return self.tools.words(self.text)


_OPS = {"<": operator.lt, ">": operator.gt}


def first_failing(table: tuple[Rule, ...], rules, scored: Scored, zero_is_off: bool) -> str | None:
    """The reason of the first row whose threshold is set and whose score fails it, else None."""
    for score, op, limit_name, reason in table:
        limit = getattr(rules, limit_name)
        if limit is None or (zero_is_off and not limit) or score in scored.skip or score not in scored.scores:
            continue
        if _OPS[op](scored.scores[score], limit):
            return reason
    return None


GOPHER_REPETITION = (
    Rule("dup_para_frac", ">", "dup_para_frac", "too_many_duplicate_paragraphs"),
    Rule("dup_para_char_frac", ">", "dup_para_char_frac", "too_many_duplicate_paragraph_chars"),
    Rule("dup_line_frac", ">", "dup_line_frac", "too_many_duplicate_lines"),
    Rule("dup_line_char_frac", ">", "dup_line_char_frac", "too_many_duplicate_line_chars"),
    *(Rule(f"top_{n}_gram_frac", ">", f"top_{n}_gram_frac", f"top_{n}_gram_too_frequent") for n in (2, 3, 4)),
    *(Rule(f"dup_{n}_gram_frac", ">", f"dup_{n}_gram_frac", f"too_many_duplicate_{n}_grams") for n in range(5, 11)),
)


def gopher_repetition_scores(page: Page, r: GopherRepetitionRules) -> Scored:
    """Duplicate paragraphs, lines and word n-grams, as fractions of the document (chars or count)."""
    from datatrove.pipeline.filters.gopher_repetition_filter import (
        find_all_duplicate, find_duplicates, find_top_duplicate, get_n_grams)

    text, words, s = page.text, page.words, {}
    n_chars = len(text)
    paragraphs = re.split(r"\n{2,}", text.strip())
    dup, dup_chars = find_duplicates(paragraphs)
    s["dup_para_frac"], s["dup_para_char_frac"] = dup / len(paragraphs), dup_chars / n_chars
    lines = re.split(r"\n+", text)
    dup, dup_chars = find_duplicates(lines)
    s["dup_line_frac"], s["dup_line_char_frac"] = dup / len(lines), dup_chars / n_chars
    for n in (2, 3, 4):
        grams = get_n_grams(words, n)
        s[f"top_{n}_gram_frac"] = find_top_duplicate(grams) / n_chars if grams else 0.0
    for n in range(5, 11):
        s[f"dup_{n}_gram_frac"] = find_all_duplicate(words, n) / n_chars
    return Scored(s)


GOPHER_QUALITY = (
    Rule("word_count", "<", "min_doc_words", "too_few_words"),
    Rule("word_count", ">", "max_doc_words", "too_many_words"),
    Rule("mean_word_length", "<", "min_avg_word_length", "mean_word_length_too_short"),
    Rule("mean_word_length", ">", "max_avg_word_length", "mean_word_length_too_long"),
    Rule("hash_word_ratio", ">", "max_symbol_word_ratio", "too_many_hashes"),
    Rule("ellipsis_word_ratio", ">", "max_symbol_word_ratio", "too_many_ellipses"),
    Rule("bullet_line_ratio", ">", "max_bullet_lines_ratio", "too_many_bullet_lines"),
    Rule("ellipsis_line_ratio", ">", "max_ellipsis_lines_ratio", "too_many_lines_ending_in_ellipsis"),
    Rule("alpha_word_ratio", "<", "min_alpha_words_ratio", "too_few_alphabetic_words"),
    Rule("stop_word_count", "<", "min_stop_words", "too_few_stop_words"),  # no list, no score: skipped
)


def gopher_quality_scores(page: Page, r: GopherQualityRules) -> Scored:
    """Word counts and lengths, symbol, bullet and ellipsis ratios, alphabetic words, stop words."""
    from datatrove.utils.text import PUNCTUATION_SET

    text, words, s = page.text, page.words, {}
    n_words = max(1, len(words))
    content = [w for w in words if any(ch not in PUNCTUATION_SET for ch in w)]
    lines = text.splitlines() or [""]
    s["word_count"] = len(content)
    s["mean_word_length"] = sum(map(len, content)) / len(content) if content else 0.0
    s["hash_word_ratio"] = text.count("#") / n_words
    s["ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / n_words
    s["bullet_line_ratio"] = sum(ln.lstrip().startswith(("•", "-")) for ln in lines) / len(lines)
    s["ellipsis_line_ratio"] = sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
    s["alpha_word_ratio"] = sum(any(c.isalpha() for c in w) for w in words) / n_words
    if (stop := page.tools.stop_word_count(words)) is not None:
        s["stop_word_count"] = stop
    # one character per "word" in zh/ja/th: mean length is meaningless
    return Scored(s, skip=frozenset({"mean_word_length"}) if page.tools.no_spaces else frozenset())


C4 = (Rule("sentence_count", "<", "min_num_sentences", "too_few_sentences"),)


@lru_cache(maxsize=None)
def c4_line_rules() -> tuple:
    """C4's substring rules on a kept line, in C4's order: (switch, substrings of the lowercased
    line, None: the line goes | a reason: the document goes, unless an earlier line gave one)."""
    from datatrove.pipeline.filters.c4_filters import POLICY_SUBSTRINGS

    return (("filter_lorem_ipsum", ("lorem ipsum",), "contains_lorem_ipsum"),
            ("filter_javascript", ("javascript",), None),
            ("filter_curly_bracket", ("{",), "contains_curly_bracket"),
            ("filter_policy", tuple(POLICY_SUBSTRINGS), None))


def c4_scores(page: Page, r: C4Rules) -> Scored:
    """C4's line pass: sentences in the kept lines, lines removed, a line rule's reason, the edited text.

    Sentences are split only when `min_num_sentences` is set; otherwise each kept line counts one.
    """
    from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION

    kept, n_sentences, reason = [], 0, None
    check_words = not page.tools.no_spaces  # whitespace words mean nothing in zh/ja/th
    lines = page.text.splitlines()
    for line in lines:
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
        for switch, substrings, doc_reason in c4_line_rules():
            if getattr(r, switch) and any(sub in lower for sub in substrings):
                if doc_reason is None:
                    break  # the line goes
                reason = reason or doc_reason
        else:
            n_sentences += len(page.tools.sentences(line)) if r.min_num_sentences else 1
            kept.append(line)
    return Scored({"sentence_count": n_sentences, "lines_removed": len(lines) - len(kept)},
                  reason=reason, text="\n".join(kept).strip())


FINEWEB = (
    Rule("line_punct_ratio", "<", "line_punct_thr", "too_few_lines_ending_in_punctuation"),
    Rule("short_line_ratio", ">", "short_line_thr", "too_many_short_lines"),
    Rule("char_dup_ratio", ">", "char_duplicates_ratio", "too_much_text_in_duplicate_lines"),
    Rule("list_ratio", ">", "new_line_ratio", "too_many_newlines_per_word"),
)


def fineweb_scores(page: Page, r: FineWebRules) -> Scored:
    """Lines ending in punctuation, short lines, text in duplicate lines, newlines per word."""
    from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
    from datatrove.utils.text import TERMINAL_PUNCTUATION

    text, s = page.text, {}
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return Scored(s, reason="no_text")
    stop_chars = tuple(TERMINAL_PUNCTUATION)
    s["line_punct_ratio"] = sum(ln.endswith(stop_chars) for ln in lines) / len(lines)
    s["short_line_ratio"] = sum(len(ln) <= r.short_line_length for ln in lines) / len(lines)
    s["char_dup_ratio"] = find_duplicates(lines)[1] / max(1, len(text.replace("\n", "")))
    s["list_ratio"] = text.count("\n") / max(1, len(page.words))
    no_punct_allowed = r.line_punct_exclude_zero and s["line_punct_ratio"] == 0
    return Scored(s, skip=frozenset({"line_punct_ratio"}) if no_punct_allowed else frozenset())


# FineWeb's order: (config field and score prefix, scorer, table, a 0 threshold turns a rule off)
FAMILIES: tuple[tuple[str, Callable[..., Scored], tuple[Rule, ...], bool], ...] = (
    ("gopher_repetition", gopher_repetition_scores, GOPHER_REPETITION, True),
    ("gopher_quality", gopher_quality_scores, GOPHER_QUALITY, True),
    ("c4", c4_scores, C4, True),
    ("fineweb", fineweb_scores, FINEWEB, False),
)


class QualityFilter:
    """`filter(doc)`: scores on `doc.scores`, keep or the first failing rule's reason."""

    name = "quality"

    def __init__(self, config: QualityConfig | None = None):
        self.config = config if config is not None else QualityConfig()

    def setup(self) -> None:
        language_tools(self.config.default_language)  # fail early on a bad default

    def filter(self, doc: Doc) -> bool | tuple[bool, str]:
        if not doc.text or not doc.text.strip():
            return False, "no_text"
        page = Page(doc.text, language_tools(doc.language or self.config.default_language))
        for family, score, table, zero_is_off in FAMILIES:
            rules = getattr(self.config, family)
            if not rules.enabled:
                continue
            scored = score(page, rules)
            doc.scores.update({f"{family}.{k}": float(v) for k, v in scored.scores.items()})
            reason = scored.reason or first_failing(table, rules, scored, zero_is_off)
            if reason:
                return False, reason
            if scored.text is not None:
                doc.text = scored.text
                page = Page(scored.text, page.tools)
        return True
