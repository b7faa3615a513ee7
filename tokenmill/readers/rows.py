"""JSONL and Parquet rows → documents: `text` is required, `id`/`url`/dates are kept, every other
field goes to `meta`. A line that is not a JSON object, or a row without text, is a named `Skip`."""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterator

import pyarrow.parquet as pq

import fsspec.compression
import fsspec.utils

from tokenmill.doc import Doc
from tokenmill.readers import remote
from tokenmill.readers.paths import InputConfig, Shard
from tokenmill.readers.skip import Skip

# Input columns this reader understands; every other column goes to `meta`. An input's own language
# columns are not kept: the language stage sets them.
READ_FIELDS = ("id", "text", "url", "language", "language_score", "warc_date", "warc_record_id")


def _row_to_doc(row: dict, shard: Shard, position: int) -> Doc | Skip:
    text = row.get("text")
    if not isinstance(text, str) or not text:
        return Skip("no_text")
    meta = {k: v for k, v in row.items() if k not in READ_FIELDS}
    doc_id = row.get("id")
    return Doc(
        id=str(doc_id) if doc_id is not None else f"{posixpath.basename(shard.path)}:{position}",
        text=text,
        url=row.get("url"),
        source=shard.path,
        source_offset=position,
        warc_date=str(row["warc_date"]) if row.get("warc_date") is not None else None,
        warc_record_id=row.get("warc_record_id"),
        meta=json.loads(json.dumps(meta, default=str)),
    )


def read_jsonl(shard: Shard, cfg: InputConfig, counters=None) -> Iterator[Doc | Skip]:
    with remote.open_input(shard.path, remote.RetryPolicy.from_config(cfg), counters) as raw:
        compression = fsspec.utils.infer_compression(shard.path)
        f = fsspec.compression.compr[compression](raw, mode="rb") if compression else raw
        for lineno, line in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="replace")):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except ValueError:
                yield Skip("bad_json_line")
                continue
            yield _row_to_doc(row, shard, lineno)


def read_parquet(shard: Shard, cfg: InputConfig, counters=None) -> Iterator[Doc | Skip]:
    position = 0
    with remote.open_input(shard.path, remote.RetryPolicy.from_config(cfg), counters) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield _row_to_doc(row, shard, position)
                position += 1
