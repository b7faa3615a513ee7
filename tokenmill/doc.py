"""The document that flows through every stage, and its Parquet form (the one place both live).

A `Doc` is created by a reader (one WARC response record, one JSONL line, one Parquet row),
annotated by stages (`language`, `scores`), and written to Parquet between processes and to
`RUN/docs/`. Its lineage (`source`, `source_offset`, `warc_record_id`, `warc_date`) lets anyone
re-read the original record: `source_offset` is the byte offset of the (gzip member of the) record.

The Parquet schema is derived from the dataclass: every field is a column except those marked
`transient` (the raw HTTP payload, read again from `source` when needed). Column forms:
    scores  list<struct<name: string, value: double>>, sorted by name: a form that pyarrow,
            pandas, polars, DuckDB and Hugging Face `datasets` all load (a Parquet map does not
            load in `datasets`). In memory it is a dict.
    meta    a JSON object as a string (any JSON-serialisable value, no schema to agree on).
Removed documents (`RUN/removed/<stage>/`) add `stage` and `reason`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

TRANSIENT = {"transient": True}  # field metadata: not written to Parquet


@dataclass
class Doc:
    id: str
    url: str | None = None
    text: str | None = None  # extracted text; None until the extract stage ran
    language: str | None = None
    language_score: float | None = None
    source: str | None = None  # input file the document came from
    source_offset: int | None = None  # byte offset of its record in `source`
    warc_record_id: str | None = None
    warc_date: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # filter scores, e.g. "gopher.word_count"
    meta: dict[str, Any] = field(default_factory=dict)  # anything else (JSON-serialisable)
    # Raw payload before extraction: the HTTP body and what the HTTP header said about it.
    raw: bytes | None = field(default=None, metadata=TRANSIENT)
    content_type: str | None = field(default=None, metadata=TRANSIENT)
    http_charset: str | None = field(default=None, metadata=TRANSIENT)


SCORES_TYPE = pa.list_(pa.struct([("name", pa.string()), ("value", pa.float64())]))
_SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64()}


def _arrow_type(name: str, tp) -> pa.DataType:
    if name == "scores":
        return SCORES_TYPE
    if name == "meta":
        return pa.string()  # JSON object
    base = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return _SCALARS[base[0]]


_HINTS = typing.get_type_hints(Doc)
COLUMNS = [f.name for f in dataclasses.fields(Doc) if not f.metadata.get("transient")]
DOC_SCHEMA = pa.schema([pa.field(n, _arrow_type(n, _HINTS[n]), nullable=n != "id") for n in COLUMNS])
REMOVED_SCHEMA = DOC_SCHEMA.append(pa.field("stage", pa.string())).append(pa.field("reason", pa.string()))


def doc_to_row(d: Doc) -> dict:
    row = {n: getattr(d, n) for n in COLUMNS}
    row["scores"] = [{"name": k, "value": v} for k, v in sorted(d.scores.items())] if d.scores else None
    row["meta"] = json.dumps(d.meta, ensure_ascii=False, default=str) if d.meta else None
    return row


def row_to_doc(row: dict) -> Doc:
    kw = {n: row.get(n) for n in COLUMNS if n in row}
    kw["scores"] = {s["name"]: s["value"] for s in row["scores"]} if row.get("scores") else {}
    kw["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
    return Doc(**kw)
