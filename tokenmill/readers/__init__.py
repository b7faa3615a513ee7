"""Readers: WARC / WET / JSONL / Parquet files in, `Doc`s out — the first step of every plan.

    reader = Reader(InputConfig(paths=("crawl/*.warc.gz",)))
    shards = reader.shards()                   # on the driver: files → Shards (byte ranges)
    docs = reader.read(shards[0], ctx)         # on a worker: documents, every skip counted

Each format reader (`warc.py`, `rows.py`) yields a `Doc` or a `Skip(reason)` per record;
`read_shard` does the accounting in one place: every record counts in `docs_in`, documents
in `docs_out`, skips under their reason, so `docs_in == docs_out + sum(drops)` always holds.
This package never imports `stages/` or `pipeline/`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from tokenmill.doc import Doc
from tokenmill.readers.paths import (  # noqa: F401 (the package's API)
    FORMATS, InputConfig, Shard, detect_format, expand_paths, is_listing, list_shards, read_listing,
)
from tokenmill.readers import httpfile, remote  # noqa: F401 (httpfile: fsspec's http(s) gets our retries)
from tokenmill.readers.remote import InputNotFound, InputUnavailable, RemoteReadError, open_input  # noqa: F401
from tokenmill.readers.rows import read_jsonl, read_parquet
from tokenmill.readers.skip import Skip
from tokenmill.readers.warc import read_warc

_FORMAT_READERS = {"warc": read_warc, "wet": read_warc, "jsonl": read_jsonl, "parquet": read_parquet}


def read_shard(shard: Shard, cfg: InputConfig, ctx) -> Iterator[Doc]:
    """Documents of one shard; `ctx.stats` (a StageStats) counts every record and every skip."""
    stats = ctx.stats
    remote.use_policy(remote.RetryPolicy.from_config(cfg))
    # I/O retries and resumes (readers/remote.py) count into the task's manifest row.
    for item in _FORMAT_READERS[shard.format](shard, cfg, stats.counters):
        stats.docs_in += 1
        if isinstance(item, Skip):
            stats.drops[item.reason] += 1
        else:
            stats.docs_out += 1
            yield item


class Reader:
    """The reading step: named "ingest" in plans and manifests, with a fingerprint like a stage's."""

    name = "ingest"
    version = 1

    def __init__(self, config: InputConfig):
        self.config = config

    def fingerprint(self) -> dict:
        # Which files are read is decided per task (its inputs); options that change documents count here.
        skip = ("paths", "max_files", "retries", "retry_max_s")  # which files, and how patiently: not what they hold
        opts = {k: v for k, v in dataclasses.asdict(self.config).items() if k not in skip}
        return {"stage": self.name, "version": self.version, "config": opts}

    def shards(self) -> list[Shard]:
        return list_shards(self.config)

    def read(self, shard: Shard, ctx) -> Iterator[Doc]:
        return read_shard(shard, self.config, ctx)
