"""Dedup fan-out tasks, part 1: signatures per shard → band keys partitioned by hash → candidate
pairs per partition, verified by estimated Jaccard. Module-level functions: each is one task.

Node ids (`gid`, uint64) encode the keep rule, so the smallest id of a cluster is its survivor:
  bit 63      0 = document of an earlier run (`against`, never dropped), 1 = this run
  bits 44..62 day of warc_date since 1970 (19 bits; `keep="latest"`: 2^19-1-day; missing: last)
  bits 24..43 source index (shard of this run, or file of the earlier runs; < 2^20)
  bits  0..23 row in that source (< 2^24)
Survivor = earlier run first, then earliest (or latest) crawl day, then input order.

Files (under the stage's workdir):
  sig/n{shard:05d}.parquet          id, warc_date, exact (16 B), sig (num_perm uint32), word_count
  bands/p{part:05d}/{src}.npz       key, gid (uint64), sketch (uint8 low byte of each sig value)
  cc/000/p{part:05d}/b{part}.npz    verified edges (u, v), both directions, keyed by u
Measured (bench/dedup_scale.py, 1M 60-word documents, 2 processes): signatures 53 s, bands
23 s, pairs 6 s; peak per task <= 312 MB, the same at 250k and 1M documents.
"""

from __future__ import annotations

import functools
import io
import resource
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.stages.base import StageStats, TaskResult
from tokenmill.stages.minhash import MinHasher, mix64, band_keys

U64 = np.uint64
NEW_BIT = 63
DAY_SHIFT, SRC_SHIFT = 44, 24
MAX_DAY, MAX_SRC, MAX_ROW = (1 << 19) - 1, (1 << 20) - 1, (1 << 24) - 1
SIG_META = b"tokenmill.dedup.signature"  # Parquet metadata key: signature parameters
_EPOCH = date(1970, 1, 1)
SIG_VERSION = 1  # bump when signatures change for the same text and parameters


def peak_rss_mb() -> float:
    """Peak resident memory of this process image in MB: VmHWM on Linux (reset by exec, unlike
    ru_maxrss, which keeps the forking parent's size); elsewhere ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sig_params(hasher: MinHasher) -> str:
    return f"v{SIG_VERSION}:ngram={hasher.ngram}:num_perm={hasher.num_perm}:seed={hasher.seed}"


def partition_of(values: np.ndarray, parts: int) -> np.ndarray:
    """Partition of each uint64 (hash-spread, so sequential gids spread evenly)."""
    return (mix64(values.astype(U64) ^ U64(0xD6E8FEB86659FD93)) >> U64(33)) % U64(parts)


def save_npz(url: str, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with storage.atomic_write(url) as f:
        f.write(buf.getvalue())


def load_npz(url: str) -> dict[str, np.ndarray]:
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
        return {k: data[k] for k in data.files}


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
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=columns)
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


def signatures_task(docs_url: str, out_url: str, hasher: MinHasher, batch: int = 512,
                    batch_chars: int = 2_000_000) -> TaskResult:
    """Read one shard of documents, write its signature file. Empty texts are counted, not dropped.
    Batches close at `batch` documents or `batch_chars` characters: hashing holds ~40 bytes per
    character of the batch (UTF-32 code points + uint64 prefix hashes), ~80 MB at 2M."""
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


@functools.lru_cache(maxsize=4096)
def _day(prefix: str) -> int:
    try:
        return min(max((date.fromisoformat(prefix) - _EPOCH).days, 0), MAX_DAY - 1)
    except ValueError:
        return MAX_DAY


def day_of(iso: str | None) -> int:
    """Days since 1970-01-01 of an ISO-8601 date ('2024-05-01T12:00:00.5Z' → its first 10
    characters, the day as written); None or unparseable → MAX_DAY (sorts last)."""
    return _day(iso[:10]) if iso else MAX_DAY


def make_gids(dates: list, src: int, new: bool, latest: bool) -> np.ndarray:
    assert src <= MAX_SRC, f"source index {src} >= 2^20: use fewer, larger shards"
    assert len(dates) <= MAX_ROW + 1, f"{len(dates)} documents in one shard (max 2^24): use smaller shards"
    days = np.array([day_of(d) for d in dates], np.int64)
    if latest:
        days = np.where(days == MAX_DAY, MAX_DAY, MAX_DAY - 1 - days)
    gid = (days.astype(U64) << U64(DAY_SHIFT)) | (U64(src) << U64(SRC_SHIFT)) | np.arange(len(dates), dtype=U64)
    if new:
        gid |= U64(1) << U64(NEW_BIT)
    return gid


def bands_task(sig_url: str, src: int, new: bool, bands_dir: str, parts: int, bands: int, rows: int,
               num_perm: int, exact: bool, latest: bool) -> TaskResult:
    """Band keys of one source, written as one file per partition: (key, gid, sketch).
    With `exact`, the first 8 bytes of the exact key are one more band. Documents without
    words get no keys (they are never near-duplicates of anything)."""
    table, _ = read_signatures(sig_url, ["warc_date", "exact", "sig", "word_count"])
    sig = sig_matrix(table, num_perm)
    gid = make_gids(table.column("warc_date").to_pylist(), src, new, latest)
    keys = band_keys(sig, bands, rows)
    if exact:
        keys = np.concatenate([keys, mix64(exact_matrix(table)[:, :1] ^ U64(0xE7AC7))], axis=1)
    has_words = table.column("word_count").to_numpy() > 0
    gid, keys, sketch = gid[has_words], keys[has_words], (sig[has_words] & 0xFF).astype(np.uint8)
    nb = keys.shape[1]
    flat_key = keys.reshape(-1)
    row = np.repeat(np.arange(len(gid)), nb)
    part = partition_of(flat_key, parts)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    name = f"{'n' if new else 'a'}{src:05d}"
    for p in range(parts):
        sel = order[bounds[p] : bounds[p + 1]]
        save_npz(storage.join(bands_dir, f"p{p:05d}", f"{name}.npz"),
                 key=flat_key[sel], gid=gid[row[sel]], sketch=sketch[row[sel]])
    return TaskResult(stats=[StageStats("dedup", docs_in=len(gid))], value={"peak_mb": peak_rss_mb()})


def sketch_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard from 8-bit sketches: P[low bytes equal] = J + (1 - J)/256, solved for J."""
    eq = (a == b).mean(axis=-1)
    return (eq - 1 / 256) / (1 - 1 / 256)


def _npz_arrays(url: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """Only the named arrays of an .npz (members are read lazily)."""
    fs, path = storage.fs_and_path(url)
    with fs.open(path, "rb") as f, np.load(f) as data:
        return [data[n] for n in names]


def pairs_task(part_dir: str, edges_dir: str, part: int, parts: int, verify: float | None,
               fallback: int = 32) -> TaskResult:
    """One band partition: documents sharing a band key are candidates; each is linked to the
    smallest member of its bucket whose sketch-estimated Jaccard >= verify (tried in id order,
    up to `fallback` members). Writes the edges both ways, keyed by node partition.
    Memory: 16 B per entry for keys and ids; sketches are loaded only for entries in a bucket
    of two or more (measured ~300 MB peak at ~1M entries)."""
    stats = StageStats("dedup")
    files = storage.glob(storage.join(part_dir, "*.npz"))
    cols = [_npz_arrays(f, ("key", "gid")) for f in files]
    sizes = [len(k) for k, _ in cols]
    key = np.concatenate([k for k, _ in cols]) if cols else np.zeros(0, U64)
    gid = np.concatenate([g for _, g in cols]) if cols else np.zeros(0, U64)
    del cols
    n_entries = int(key.size)
    order = np.lexsort((gid, key))
    key, gid = key[order], gid[order]
    start = np.concatenate(([True], key[1:] != key[:-1])) if key.size else np.zeros(0, bool)
    end = np.concatenate((start[1:], [True])) if key.size else np.zeros(0, bool)
    multi = ~(start & end)  # entries of buckets with two or more members
    order, key, gid, start = order[multi], key[multi], gid[multi], start[multi]
    sketch = None
    if verify is not None:
        file_of = np.searchsorted(np.cumsum(sizes), order, side="right")
        for i, f in enumerate(files):
            sel = np.flatnonzero(file_of == i)
            if sel.size:
                (sk,) = _npz_arrays(f, ("sketch",))
                if sketch is None:
                    sketch = np.empty((order.size, sk.shape[1]), np.uint8)
                sketch[sel] = sk[order[sel] - (sum(sizes[:i]))]
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)[group]  # index of each entry's bucket head (smallest gid)
    cand = np.flatnonzero(~start)
    stats.counters["candidate_pairs"] = int(cand.size)
    us, vs = gid[first[cand]], gid[cand]
    if verify is not None and cand.size:
        ok = sketch_jaccard(sketch[first[cand]], sketch[cand]) >= verify
        for i in np.flatnonzero(~ok):  # the head is not similar enough: try other earlier members
            c = cand[i]
            lo = first[c]
            for j in range(lo + 1, min(c, lo + fallback)):
                if gid[j] != gid[c] and sketch_jaccard(sketch[j], sketch[c]) >= verify:
                    us[i], ok[i] = gid[j], True
                    break
        stats.counters["rejected_pairs"] = int((~ok).sum())
        us, vs = us[ok], vs[ok]
    keep = (us != vs) & ((us >> U64(NEW_BIT)) | (vs >> U64(NEW_BIT))).astype(bool)  # skip old-old
    us, vs = us[keep], vs[keep]
    write_edges(edges_dir, f"b{part:05d}", np.concatenate([us, vs]), np.concatenate([vs, us]), parts)
    stats.counters["edges"] = int(us.size)
    return TaskResult(stats=[stats], value={"peak_mb": peak_rss_mb(), "entries": n_entries})


def write_edges(round_dir: str, name: str, src: np.ndarray, dst: np.ndarray, parts: int) -> None:
    """Edges (src → dst) into one file per partition of src: round_dir/p{part}/{name}.npz."""
    part = partition_of(src, parts)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    for p in range(parts):
        sel = order[bounds[p] : bounds[p + 1]]
        if sel.size:
            save_npz(storage.join(round_dir, f"p{p:05d}", f"{name}.npz"), u=src[sel], v=dst[sel])
