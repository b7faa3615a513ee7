"""Read a tokens directory (what the tokenize stage writes): shards, documents, fixed windows.

    from tokenmill.tokenize import TokenShards
    ds = TokenShards("runs/demo/tokens")          # manifest read; headers and sha256 checked
    tok = ds.tokenizer()                          # the tokenizer.json beside the shards
    for doc in ds.documents("val"):               # uint16/uint32 arrays, each starting with BOS
        print(tok.decode(doc[1:].tolist()))
    x = next(ds.windows("train", 1025))           # fixed windows that start at a document

In: `RUN/tokens` (local path or fsspec URL). Out: memory-mapped numpy views, no copies.
Checking sha256 reads every byte once: ~1.2 s per GB on this machine; `verify=False` skips it
(headers and sizes are always checked).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.tokenize.shards import (  # noqa: F401 (MANIFEST* re-exported)
    MANIFEST, MANIFEST_SCHEMA, TOKENIZER, ShardError, doc_bounds, open_tokens, read_header, read_index,
)



class TokenShards:
    """The shards of one tokens directory, as listed (and checked) by its manifest."""

    def __init__(self, tokens_dir: str, verify: bool = True):
        self.dir = tokens_dir.rstrip("/")
        mpath = storage.join(self.dir, MANIFEST)
        if not storage.exists(mpath):
            raise ValueError(f"no token shards in {self.dir} ({MANIFEST} missing); run `tokenmill run` with the "
                             f"tokenize stage first, or point --tokens at RUN/tokens")
        fs, p = storage.fs_and_path(mpath)
        with fs.open(p, "rb") as f:
            raw = f.read()
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        self.rows: list[dict] = pq.read_table(pa.BufferReader(raw)).to_pylist()
        if not self.rows:
            raise ValueError(f"{mpath} lists no shards: the run produced no tokens (no documents survived?)")
        first = self.rows[0]
        self.vocab_size, self.bos_id = int(first["vocab_size"]), int(first["bos_id"])
        self.tokenizer_sha256 = first["tokenizer_sha256"]
        self.dtype = first["dtype"]  # uint16 | uint32
        for row in self.rows:
            self._check(row, verify)

    def _check(self, row: dict, verify: bool) -> None:
        path = self.path(row)
        h = read_header(path)
        if h.n_tokens != row["tokens"] or h.dtype.name != row["dtype"]:
            raise ShardError(f"{path}: header says {h.n_tokens} {h.dtype.name} tokens, the manifest "
                             f"{row['tokens']} {row['dtype']}; the directory mixes two runs")
        if verify and storage.sha256_file(path) != row["sha256"]:
            raise ShardError(f"{path}: sha256 differs from {MANIFEST}; the file is corrupt or was replaced")

    def path(self, row: dict) -> str:
        return storage.join(self.dir, row["shard"])

    def shards(self, split: str) -> list[dict]:
        rows = sorted((r for r in self.rows if r["split"] == split), key=lambda r: r["index"])
        return rows

    def n_tokens(self, split: str) -> int:
        return sum(r["tokens"] for r in self.shards(split))

    def bytes_per_token(self, split: str) -> float:
        """UTF-8 bytes of text per token over the split (BOS counted as a token)."""
        rows = self.shards(split)
        return sum(r["text_bytes"] for r in rows) / max(1, sum(r["tokens"] for r in rows))

    def tokens(self, row: dict) -> np.ndarray:
        return open_tokens(self.path(row))

    def bounds(self, row: dict) -> np.ndarray:
        """(documents + 1,) offsets: document i is tokens[b[i]:b[i+1]]."""
        return doc_bounds(read_index(self.path(row), row["tokens"]), row["tokens"])

    def documents(self, split: str) -> Iterator[np.ndarray]:
        """Each document's tokens (BOS first), in shard order."""
        for row in self.shards(split):
            tokens, b = self.tokens(row), self.bounds(row)
            for i in range(len(b) - 1):
                yield tokens[b[i] : b[i + 1]]

    def windows(self, split: str, size: int, bos_aligned: bool = True) -> Iterator[np.ndarray]:
        """Non-overlapping windows of exactly `size` tokens, in shard order, never across shards.
        With `bos_aligned`, each starts at a document start (the rest of the last document is skipped)."""
        for row in self.shards(split):
            tokens = self.tokens(row)
            starts = self.bounds(row)[:-1]
            pos, n = 0, len(tokens)
            while pos + size <= n:
                yield tokens[pos : pos + size]
                pos += size
                if bos_aligned:
                    k = int(np.searchsorted(starts, pos))
                    if k == len(starts):
                        break
                    pos = int(starts[k])

    def tokenizer(self):
        from tokenmill.tokenize.tokenizer import load_tokenizer, tokenizer_hash

        tok = load_tokenizer(storage.join(self.dir, TOKENIZER))
        if tokenizer_hash(tok) != self.tokenizer_sha256:
            raise ValueError(f"{self.dir}/{TOKENIZER} is not the tokenizer these shards were made with")
        return tok
