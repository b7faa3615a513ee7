"""Per-shard MinHash signatures: the first dedup task, and the persisted form later runs read.

    sig/n{shard:05d}.parquet   id, warc_date, exact (16 B), sig (num_perm uint32), word_count
The signature parameters travel in the Parquet metadata (`SIG_META`), so an earlier run's
persisted signatures are reused only when they were made the same way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from tokenmill import storage
from tokenmill.stages.base import TaskResult
from tokenmill.stages.dedup.files import U64, peak_rss_mb
from tokenmill.stages.dedup.minhash import MinHasher
from tokenmill.stats import StageStats

SIG_META = b"tokenmill.dedup.signature"  # Parquet metadata key: signature parameters


# bump when signatures or exact keys change for the same text and parameters; 2: 32-bit
# permutations of 32-bit shingle hashes, word hashes over lowercase code points
SIG_VERSION = 2


def sig_params(hasher: MinHasher) -> str:
    return f"v{SIG_VERSION}:ngram={hasher.ngram}:num_perm={hasher.num_perm}:seed={hasher.seed}"


def write_signatures(url: str, ids: list[str], dates: list, exact: list[bytes], sigs: np.ndarray,
                     words: np.ndarray, params: str) -> int:
    k = sigs.shape[1]
    sig_col = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4 * k), len(ids), [None, pa.py_buffer(np.ascontiguousarray(sigs, np.uint32).tobytes())])
    table = pa.table({
        "id": pa.array(ids, pa.string()),
        "warc_date": pa.array(dates, pa.string()),
        "exact": pa.array(exact, pa.binary(16)),
        "sig": sig_col,
        "word_count": pa.array(words, pa.int32()),
    }).replace_schema_metadata({SIG_META: params.encode()})
    with storage.atomic_write(url) as f:
        pq.write_table(table, f, compression="zstd")
    return len(ids)


def read_signatures(url: str, columns: list[str] | None = None) -> tuple[pa.Table, str]:
    """The table and its signature parameters ('' when the file has none)."""
    table = storage.read_table(url, columns)
    meta = (table.schema.metadata or {}).get(SIG_META, b"").decode()
    return table, meta


def sig_matrix(table: pa.Table, num_perm: int) -> np.ndarray:
    col = table.column("sig").combine_chunks()
    raw = np.frombuffer(col.buffers()[1], np.uint32)
    return raw[col.offset * num_perm : (col.offset + len(col)) * num_perm].reshape(len(col), num_perm)


def exact_matrix(table: pa.Table) -> np.ndarray:
    """(n, 2) uint64 view of the 16-byte exact keys."""
    col = table.column("exact").combine_chunks()
    raw = np.frombuffer(col.buffers()[1], U64)
    return raw[col.offset * 2 : (col.offset + len(col)) * 2].reshape(len(col), 2)


def sig_digest(table: pa.Table) -> str:
    """xxh3-64 of what a file's band entries are made from besides `sig`: the exact keys (which
    fix the words, hence the signatures) and the warc_date of each row, in order. Ties a
    persisted band file to the signature file it was made from."""
    h = xxhash.xxh3_64()
    h.update(exact_matrix(table).tobytes())
    h.update("\x1f".join(d or "" for d in table.column("warc_date").to_pylist()).encode())
    return h.hexdigest()


def signatures_task(docs_url: str, out_url: str, hasher: MinHasher, batch: int = 512,
                    batch_chars: int = 2_000_000) -> TaskResult:
    """Read one shard of documents, write its signature file. Empty texts are counted, not dropped.
    Batches close at `batch` documents or `batch_chars` characters: hashing holds ~24 bytes per
    character of the batch at its peak (the joined text, UTF-32 code points, their lowercase,
    uint64 prefix hashes; measured with tracemalloc), ~50 MB at 2M."""
    stats = StageStats("dedup")
    ids, dates, exact, sigs, words = [], [], [], [], []
    buf = []

    def flush():
        texts = [d.text or "" for d in buf]
        s, e, w = hasher.signatures_and_keys(texts)
        ids.extend(d.id for d in buf)
        dates.extend(d.warc_date for d in buf)
        exact.extend(e)
        sigs.append(s)
        words.append(w)
        buf.clear()

    chars = 0
    for doc in storage.read_docs(docs_url):
        buf.append(doc)
        chars += len(doc.text or "")
        if len(buf) >= batch or chars >= batch_chars:
            flush()
            chars = 0
    if buf:
        flush()
    sig = np.concatenate(sigs) if sigs else np.zeros((0, hasher.num_perm), np.uint32)
    wc = np.concatenate(words) if words else np.zeros(0, np.int64)
    stats.docs_in = len(ids)
    stats.counters["no_words"] = int((wc == 0).sum())
    stats.counters["duplicate_ids"] = len(ids) - len(set(ids))
    write_signatures(out_url, ids, dates, exact, sig, wc, sig_params(hasher))
    return TaskResult(stats=[stats], outputs=[out_url], value={"docs": len(ids), "peak_mb": peak_rss_mb()})
