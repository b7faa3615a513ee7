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
and, with a run's persisted signatures, RUN/dedup/signatures/part-{shard:05d}.bands: its band
entries sorted by key, which a later run's pairs tasks read by range instead of recomputing
them (bench/against_scale.py, 100,000 new documents against 1,000,000 earlier signatures:
~1 CPU-s more than without `against`; 65 when recomputed). Over 300 lines because that
file is the band step's output kept for later: same keys, same partition function, same gids.
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
    BlockFileError,
    npz_arrays,
    partition_of,
    peak_rss_mb,
    read_block_file,
    read_block_header,
    read_block_rows,
    read_block_take,
    save_npz,
    write_block_file,
)
from tokenmill.stages.dedup.minhash import band_keys, mix64
from tokenmill.stages.dedup.signatures import (
    exact_matrix,
    read_signatures,
    sig_digest,
    sig_matrix,
)
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


def band_part(keys: np.ndarray, parts: int) -> np.ndarray:
    """Partition of each band key: which of `parts` equal ranges of the 64-bit values holds it.
    Band keys are mix64 outputs (uniform), so partitions are even; and key-sorted entries fall
    into contiguous runs for any `parts`, which lets a later run slice a persisted band file."""
    return ((keys.astype(U64) >> U64(32)) * U64(parts)) >> U64(32)


def _entries(table, sig: np.ndarray, bands: int, rows: int, exact: bool) -> np.ndarray:
    """(D, bands [+1]) band keys of a signature table; with `exact`, the first 8 bytes of the
    exact key are one more band."""
    keys = band_keys(sig, bands, rows)
    if exact:
        keys = np.concatenate([keys, mix64(exact_matrix(table)[:, :1] ^ U64(0xE7AC7))], axis=1)
    return keys


def bands_task(sig_url: str, src: int, new: bool, bands_dir: str, parts: int, bands: int, rows: int,
               num_perm: int, exact: bool, latest: bool) -> TaskResult:
    """Band keys of one source, written as one file per partition: (key, gid, sketch).
    With `exact`, the first 8 bytes of the exact key are one more band. Documents without
    words get no keys (they are never near-duplicates of anything)."""
    table, _ = read_signatures(sig_url, ["warc_date", "exact", "sig", "word_count"])
    sig = sig_matrix(table, num_perm)
    gid = make_gids(table.column("warc_date").to_pylist(), src, new, latest)
    keys = _entries(table, sig, bands, rows, exact)
    has_words = table.column("word_count").to_numpy() > 0
    gid, keys, sketch = gid[has_words], keys[has_words], (sig[has_words] & 0xFF).astype(np.uint8)
    nb = keys.shape[1]
    flat_key = keys.reshape(-1)
    row = np.repeat(np.arange(len(gid)), nb)
    part = band_part(flat_key, parts)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    name = f"{'n' if new else 'a'}{src:05d}"
    for p in range(parts):
        sel = order[bounds[p] : bounds[p + 1]]
        save_npz(storage.join(bands_dir, f"p{p:05d}", f"{name}.npz"),
                 key=flat_key[sel], gid=gid[row[sel]], sketch=sketch[row[sel]])
    return TaskResult(stats=[StageStats("dedup", docs_in=len(gid))], value={"peak_mb": peak_rss_mb()})


# ---- band entries persisted with a run's kept signatures, for later runs' `against` ----
#   RUN/dedup/signatures/part-{shard:05d}.bands   a block file (files.py):
#     key     (E,) uint64, sorted (then by base): every band key of every kept document with words
#     base    (E,) uint64, that entry's gid without source index and new bit (day in "earliest" order, row)
#     sketch  (D, num_perm) uint8, per row of the signature file (the low byte of each value)
#   meta: the operating point (`band_point`), "docs" (rows of the signature file) and "digest"
#   (signatures.sig_digest of it). A later run at the same operating point reads, per band
#   partition, the run of keys in that partition's range instead of recomputing and
#   repartitioning them (`against_bands_task` checks the file, `pairs_task` reads the ranges).
BANDS_FORMAT = 1  # bump when band keys, the exact band, band_part or this layout change


def band_point(sig_params: str, bands: int, rows: int, exact: bool) -> dict:
    """What a persisted band file must have been made with to be read instead of recomputed."""
    return {"format": BANDS_FORMAT, "signatures": sig_params, "bands": int(bands), "rows": int(rows),
            "exact": bool(exact)}


def bands_url_of(sig_url: str) -> str:
    """The persisted band file beside a persisted signature file."""
    return sig_url[: -len(".parquet")] + ".bands" if sig_url.endswith(".parquet") else sig_url + ".bands"


def persist_bands(url: str, table, point: dict, num_perm: int) -> int:
    """Write the band file of a kept signature table (columns warc_date, exact, sig, word_count);
    returns its number of entries."""
    sig = sig_matrix(table, num_perm)
    base = make_gids(table.column("warc_date").to_pylist(), 0, False, False)
    keys = _entries(table, sig, point["bands"], point["rows"], point["exact"])
    has_words = table.column("word_count").to_numpy() > 0
    key = keys[has_words].reshape(-1)
    base = np.repeat(base[has_words], keys.shape[1])
    order = np.lexsort((base, key))
    write_block_file(url, {**point, "docs": table.num_rows, "digest": sig_digest(table)},
                     key=key[order], base=base[order], sketch=(sig & 0xFF).astype(np.uint8))
    return int(key.size)


def against_gids(base: np.ndarray, src: int, latest: bool) -> np.ndarray:
    """gids of persisted entries (`base`) when their file is earlier-run source `src` of this run."""
    if src > MAX_SRC:
        raise ValueError(f"dedup: source index {src} >= 2^20: use fewer, larger shards")
    day = base >> U64(DAY_SHIFT)
    if latest:
        day = np.where(day == MAX_DAY, U64(MAX_DAY), U64(MAX_DAY - 1) - day)
    return (day << U64(DAY_SHIFT)) | (U64(src) << U64(SRC_SHIFT)) | (base & U64(MAX_ROW))


def check_band_file(bands_url: str, sig_url: str, point: dict, num_perm: int, parts: int) -> dict:
    """Check an earlier run's persisted band file (checksums, operating point, made from
    `sig_url`) and return where each of this run's `parts` partitions starts in it:
    value {"use": True, "bounds": [parts + 1 ints], "entries"}; or {"use": False, "kind":
    "missing" | "other_point" | "corrupt" | "foreign", "reason"} to have it recomputed."""
    value = {"use": False}
    try:
        head, arr = read_block_file(bands_url, verify=True)
    except FileNotFoundError:
        value.update(kind="missing", reason=f"no {bands_url}")
    except BlockFileError as e:
        value.update(kind="corrupt", reason=str(e))
    else:
        meta = head["meta"]
        made = {k: meta.get(k) for k in point}
        key, base, sketch = arr.get("key"), arr.get("base"), arr.get("sketch")
        if made != point:
            value.update(kind="other_point", reason=f"{bands_url} was made for {made}, this run needs {point}")
        elif (key is None or base is None or sketch is None or key.dtype != U64 or base.dtype != U64
              or key.ndim != 1 or base.shape != key.shape or sketch.dtype != np.uint8
              or sketch.shape != (meta.get("docs"), num_perm)):
            value.update(kind="corrupt", reason=f"{bands_url}: arrays are not (key, base, sketch) of its documents")
        elif key.size and (bool((key[1:] < key[:-1]).any()) or int((base & U64(MAX_ROW)).max()) >= sketch.shape[0]):
            value.update(kind="corrupt", reason=f"{bands_url}: keys not sorted or rows out of range")
        else:
            table, _ = read_signatures(sig_url, ["exact", "warc_date"])
            if table.num_rows != meta.get("docs") or sig_digest(table) != meta.get("digest"):
                value.update(kind="foreign", reason=f"{bands_url} was made from other signatures than {sig_url}")
            else:
                bounds = np.searchsorted(band_part(key, parts), np.arange(parts + 1, dtype=U64))
                value.update(use=True, bounds=[int(b) for b in bounds], entries=int(key.size))
    return value


def against_bands_task(files: list[tuple[str, str]], point: dict, num_perm: int, parts: int) -> TaskResult:
    """`check_band_file` for each (band file, signature file), one file in memory at a time;
    value {"files": [each file's verdict], "peak_mb"}."""
    out = [check_band_file(b, s, point, num_perm, parts) for b, s in files]
    return TaskResult(stats=[StageStats("dedup")], value={"files": out, "peak_mb": peak_rss_mb()})


def _in_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    if sorted_unique.size == 0:
        return np.zeros(values.shape, bool)
    idx = np.minimum(np.searchsorted(sorted_unique, values), sorted_unique.size - 1)
    return sorted_unique[idx] == values


def sketch_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard from 8-bit sketches: P[low bytes equal] = J + (1 - J)/256, solved for J."""
    eq = (a == b).mean(axis=-1)
    return (eq - 1 / 256) / (1 - 1 / 256)


def pairs_task(part_dir: str, edges_dir: str, part: int, parts: int, verify: float | None,
               fallback: int = 32, persisted: tuple = (), latest: bool = False, chunk: int = 1 << 20) -> TaskResult:
    """One band partition: documents sharing a band key are candidates; each is linked to the
    smallest member of its bucket whose sketch-estimated Jaccard >= verify (tried in id order,
    up to `fallback` members). Writes the edges both ways, keyed by node partition.
    Entries: the partition's files in `part_dir`, and `persisted` (url, src, lo, hi): entries
    [lo, hi) of earlier runs' band files. Entries of earlier runs are kept only when their key
    is also a key of this run (a bucket without a document of this run gives no edge).
    Memory: 16 B per entry for keys and ids; a persisted range is read in chunks of `chunk`
    entries, of which only the matches are kept (so persisted entries do not count towards the
    partitions: stage.py); sketches are loaded only for entries in a bucket of two or more
    (measured ~300 MB peak at ~1M entries)."""
    stats = StageStats("dedup")
    files = storage.glob(storage.join(part_dir, "*.npz"))
    cols = [npz_arrays(f, ("key", "gid")) for f in files]
    n_entries = sum(int(k.size) for k, _ in cols)
    is_new = [(g >> U64(NEW_BIT)).astype(bool) for _, g in cols]
    old = bool(persisted) or not all(m.all() for m in is_new)
    # keys of this run's entries, sorted (repeats kept), to look earlier runs' keys up in
    new_keys = np.sort(np.concatenate([k[m] for (k, _), m in zip(cols, is_new)])) if old and cols else np.zeros(0, U64)
    # blocks: (key, gid, where its sketches are, the row of each entry there; None: the same)
    blocks = []
    for f, (k, g), m in zip(files, cols, is_new):
        if m.all():
            blocks.append((k, g, ("npz", f, None), None))
        else:
            idx = np.flatnonzero(m | _in_sorted(k, new_keys))
            blocks.append((k[idx], g[idx], ("npz", f, None), idx))
    del cols, is_new
    for url, src, lo, hi in persisted:
        head = read_block_header(url)
        for c in range(lo, hi, chunk):
            k = read_block_rows(url, head, "key", c, min(hi, c + chunk))
            n_entries += int(k.size)
            stats.counters["earlier_entries_read"] += int(k.size)
            idx = np.flatnonzero(_in_sorted(k, new_keys))
            if idx.size:
                base = read_block_take(url, head, "base", c + idx)
                blocks.append((k[idx], against_gids(base, src, latest), ("block", url, head),
                               (base & U64(MAX_ROW)).astype(np.int64)))
    sizes = [int(b[0].size) for b in blocks]
    key = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, U64)
    gid = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, U64)
    order = np.lexsort((gid, key))
    key, gid = key[order], gid[order]
    start = np.concatenate(([True], key[1:] != key[:-1])) if key.size else np.zeros(0, bool)
    end = np.concatenate((start[1:], [True])) if key.size else np.zeros(0, bool)
    multi = ~(start & end)  # entries of buckets with two or more members
    order, key, gid, start = order[multi], key[multi], gid[multi], start[multi]
    sketch = None
    if verify is not None:
        offsets = np.concatenate(([0], np.cumsum(sizes)))
        block_of = np.searchsorted(offsets[1:], order, side="right")
        for i, (_, _, (kind, url, head), rows) in enumerate(blocks):
            sel = np.flatnonzero(block_of == i)
            if not sel.size:
                continue
            want = order[sel] - offsets[i]
            want = want if rows is None else rows[want]
            if kind == "npz":
                (sk,) = npz_arrays(url, ("sketch",))
                sk = sk[want]
            else:
                sk = read_block_take(url, head, "sketch", want)
            if sketch is None:
                sketch = np.empty((order.size, sk.shape[1]), np.uint8)
            sketch[sel] = sk
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
