"""The filter stages: thin wrappers that run tokenmill/filters under the stage contract.

In: documents; out: the kept documents, every drop counted under its reason (the base class
collects dropped documents for `removed/<stage>/`). Heavy state is loaded in `setup()`, once
per worker: the UT1 domain hashes (36 MB: ~0.1 CPU-s from the on-disk cache, ~2 s to build it
the first time), lid.176 (~25 ms), spaCy blank pipelines (~0.9 CPU-s for spaCy and English, then
per language on first use). Each stage's seconds per task are in the manifest
(`stage_seconds`); `tokenmill inspect RUN` sums them.

| stage       | class           | config            | order in FineWeb's recipe |
|-------------|-----------------|-------------------|---------------------------|
| url_filter  | UrlFilterStage  | UrlFilterConfig   | before extract            |
| language    | LanguageStage   | LanguageConfig    | after extract             |
| quality     | QualityStage    | QualityConfig     | after language            |
| pii         | PiiStage        | PiiConfig         | after dedup               |
"""

from __future__ import annotations

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.filters.language import LanguageConfig, LanguageFilter
from tokenmill.filters.pii import PiiConfig, PiiScrubber
from tokenmill.filters.quality import QualityConfig, QualityFilter
from tokenmill.filters.url import UrlFilter, UrlFilterConfig
from tokenmill.stages.base import FilterStage, MapStage, StageContext


class UrlFilterStage(FilterStage):
    """Drops blocklisted URLs before extraction. Documents without a URL are kept, counted as `no_url`."""

    name = "url_filter"
    Config = UrlFilterConfig

    def build_filters(self) -> list:
        return [UrlFilter(self.config)]

    def fingerprint(self) -> dict:
        """The user's list files count by content, so editing one redoes the stage on resume."""
        fp = super().fingerprint()
        c = self.config
        files = [*c.extra_domain_files, *c.extra_url_files, *c.allow_domain_files]
        fp["list_files"] = {f: storage.sha256_file(f) if storage.exists(f) else None for f in files}
        return fp

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        if not (doc.url or "").strip():
            ctx.count("no_url")
            return doc
        return super().process(doc, ctx)


class LanguageStage(FilterStage):
    """Sets `language`/`language_score` on every document; keeps the configured languages."""

    name = "language"
    Config = LanguageConfig

    def build_filters(self) -> list:
        return [LanguageFilter(self.config)]


class QualityStage(FilterStage):
    """Gopher repetition, Gopher quality, C4 and FineWeb rules; scores on `doc.scores`."""

    name = "quality"
    Config = QualityConfig

    def build_filters(self) -> list:
        return [QualityFilter(self.config)]


class PiiStage(MapStage):
    """Replaces PII in `text` with placeholders; never drops. Counts `pii.<type>` replacements."""

    name = "pii"
    Config = PiiConfig

    def setup(self) -> None:
        self.scrubber = PiiScrubber(self.config)

    def process(self, doc: Doc, ctx: StageContext) -> Doc | None:
        if not doc.text:
            return doc
        if not hasattr(self, "scrubber"):
            self.setup()
        doc.text, counts = self.scrubber.scrub(doc.text)
        for kind, n in counts.items():
            ctx.count(f"pii.{kind}", n)
        if counts:
            ctx.count("pii.documents_changed")
        return doc
