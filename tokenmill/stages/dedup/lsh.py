"""LSH: band keys partitioned by hash → candidate pairs per partition, verified by estimated Jaccard.

Node ids (`gid`, uint64) encode the keep rule, so the smallest id of a cluster is its survivor:
  bit 63      0 = document of an earlier run (`against`, never dropped), 1 = this run
  bits 44..62 day of warc_date since 1970 (19 bits; `keep="latest"`: 2^19-1-day; missing: last)
  bits 24..43 source index (shard of this run, or file of the earlier runs; < 2^20)
  bits  0..23 row in that source (< 2^24)
Survivor = earlier run first, then earliest (or latest) crawl day, then input order.

Files (under the stage's workdir):
  bands/p{part:05d}/{src}.npz       key, gid (uint64), sketch (uint8 low byte of each sig value)
  cc/000/p{part:05d}/b{part}.npz    verified edges (u, v), both directions, keyed by u
Per-task memory and time: bench/dedup_scale.py.
"""

from __future__ import annotations

import functools
from datetime import date

import numpy as np

from tokenmill import storage
from tokenmill.stages.base import TaskResult
from tokenmill.stages.dedup.files import (
    U64,
    npz_arrays,
    partition_of,
    peak_rss_mb,
    save_npz,
)
from tokenmill.stages.dedup.minhash import band_keys, mix64
from tokenmill.stages.dedup.signatures import exact_matrix, read_signatures, sig_matrix
from tokenmill.stats import StageStats

NEW_BIT = 63


DAY_SHIFT, SRC_SHIFT = 44, 24


MAX_DAY, MAX_SRC, MAX_ROW = (1 << 19) - 1, (1 << 20) - 1, (1 << 24) - 1


_EPOCH = date(1970, 1, 1)


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
    if src > MAX_SRC:
        raise ValueError(f"dedup: source index {src} >= 2^20: use fewer, larger shards")
    if len(dates) > MAX_ROW + 1:
        raise ValueError(f"dedup: {len(dates)} documents in one shard (max 2^24): use smaller shards")
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


def pairs_task(part_dir: str, edges_dir: str, part: int, parts: int, verify: float | None,
               fallback: int = 32) -> TaskResult:
    """One band partition: documents sharing a band key are candidates; each is linked to the
    smallest member of its bucket whose sketch-estimated Jaccard >= verify (tried in id order,
    up to `fallback` members). Writes the edges both ways, keyed by node partition.
    Memory: 16 B per entry for keys and ids; sketches are loaded only for entries in a bucket
    of two or more (measured ~300 MB peak at ~1M entries)."""
    stats = StageStats("dedup")
    files = storage.glob(storage.join(part_dir, "*.npz"))
    cols = [npz_arrays(f, ("key", "gid")) for f in files]
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
                (sk,) = npz_arrays(f, ("sketch",))
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
