"""Language pre-pass on raw HTML: pages confidently in a language that is not kept skip extraction.

In: a page's decoded HTML. Out: `(label, score)` from lid.176 on its text with the tags stripped
by regular expressions (scripts, styles, comments and tags removed, entities unescaped, the
first `MAX_CHARS` characters, normalised as the language stage normalises), and a verdict:
`decide(label, score)` is True when the top label is not among the kept languages and scores at
least `min_score`. No trafilatura, no DOM: ~4 ms a page on the shared pages (strip 1.5, lid.176
2.5) against trafilatura's ~25 ms.

It is a shortcut, not the language decision: the extract stage drops a skipped page as
`language_prefilter` (its stripped text, label and score kept for `removed/extract/`), every
other page is extracted and judged by the language stage on its extracted text as before. A
skip changes a verdict only when the language stage would have kept the page after
extraction; bench/prefilter.py measures that rate on every real set in ../shared/data.
"""

from __future__ import annotations

import html as htmllib
import re

from tokenmill.filters.language import canonical_code, load_model, model_labels, normalize_for_lid

# Of stripped text, what lid.176 sees. On the tune half of bench/prefilter.py's sets 5,000 characters
# skip the same pages as 20,000 (730 vs 731 of 1,046, no verdict changed either way) at half the cost.
MAX_CHARS = 5_000
_BLOCKS = re.compile(r"<(script|style|noscript|template|svg)\b.*?</\1\s*>|<!--.*?-->", re.I | re.S)
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def strip_tags(html: str, limit: int = MAX_CHARS) -> str:
    """The page's visible-ish text: blocks that hold no prose, then tags, removed; entities decoded.
    The whole page is stripped (~1.5 ms for the shared pages): stripping it in growing slices until
    `limit` characters were found measured slower (~2.3 ms), the text often starting past 64 kB."""
    text = _TAGS.sub(" ", _BLOCKS.sub(" ", html))
    return _SPACE.sub(" ", htmllib.unescape(text)).strip()[:limit]


class LanguagePrefilter:
    """`predict(html)` then `decide(label, score)`: whether a page is confidently in none of
    `languages` (lid.176's top label)."""

    def __init__(self, languages, min_score: float, max_chars: int = MAX_CHARS):
        self.keep = {canonical_code(c) for c in languages}
        unknown = sorted(c for c in self.keep if c not in model_labels())
        if unknown:
            raise ValueError(f"extract.language_prefilter: lid.176 does not know {unknown}")
        self.min_score = min_score
        self.max_chars = max_chars
        self.model = None

    def setup(self) -> None:
        self.model = load_model()

    def predict(self, html: str) -> tuple[str | None, float, str]:
        """(label, score, stripped text); (None, 0.0, text) when no letters are left."""
        if self.model is None:
            self.setup()
        text = strip_tags(html, self.max_chars)
        line = normalize_for_lid(text)
        if not any(c.isalpha() for c in line):
            return None, 0.0, text
        labels, probs = self.model.predict(line, k=1)
        return labels[0].removeprefix("__label__"), min(1.0, float(probs[0])), text

    def decide(self, label: str | None, score: float) -> bool:
        return label is not None and label not in self.keep and score >= self.min_score
