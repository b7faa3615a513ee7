"""The document that flows through every stage.

A `Doc` is created by a reader (one WARC response record, one JSONL line, one Parquet row),
annotated by stages (`language`, `scores`), and written to Parquet between processes.
Its lineage (`source`, `source_offset`, `warc_record_id`, `warc_date`) lets anyone re-read
the original record: `source_offset` is the byte offset of the (gzip member of the) record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Doc:
    id: str
    text: str | None = None  # extracted text; None until the extract stage ran
    url: str | None = None
    source: str | None = None  # input file the document came from
    source_offset: int | None = None  # byte offset of its record in `source`
    warc_record_id: str | None = None
    warc_date: str | None = None
    language: str | None = None
    language_score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # filter scores, e.g. "gopher.word_count"
    meta: dict[str, Any] = field(default_factory=dict)  # anything else (JSON-serialisable)
    # Raw payload before extraction: the HTTP body and what the HTTP header said about it.
    raw: bytes | None = None
    content_type: str | None = None
    http_charset: str | None = None
