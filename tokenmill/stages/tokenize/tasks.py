"""The task bodies of the tokenize stage: sample, train, encode, write shards.

Each function is module-level (pickled to Ray workers) and takes plain arguments; outputs are
written under temporary names and renamed. The flow (orchestrated in stage.py):

    sample_shard   per input shard: its documents with the smallest sample keys, up to a byte budget
    train_tokenizer one task: byte-level BPE on all samples (in key order) → tokens/tokenizer.json
    encode_shard   per input shard: encode_batch_fast (the batch API without character offsets)
                   → raw tokens + per-document (key, split hash, length) in the scratch dir, and
                   a histogram of tokens over the shuffle key
    write_shard_range per output shard: the documents whose shuffle key falls in its range,
                   from every encoded part, in key order → NAME_{split}_{index:06d}.bin/.idx
                   (each reads every part's small per-document records: 28 bytes a document)

Documents are ordered by `shuffle_key(id, seed)` within a split, so the output order does not
depend on how the input was sharded, and each write task holds only its own shard in memory.
The split is `val` when `split_hash(id) < val_cut`: unseeded, so stable across reruns and seeds.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from tokenmill import storage
from tokenmill.stages.base import StageStats, TaskResult
from tokenmill.tokenize.shards import dtype_for_vocab, open_raw, write_shard
from tokenmill.tokenize.tokenizer import load_tokenizer, token_id, train_bpe

KEY_BINS = 1 << 16  # histogram of tokens over the top 16 bits of the shuffle key
META_DTYPE = np.dtype([("key", "<u8"), ("u", "<u8"), ("length", "<u4"), ("text_bytes", "<u8")])


def shuffle_key(doc_id: str, seed: int) -> int:
    return xxhash.xxh64_intdigest(doc_id.encode(), seed=seed)


def sample_key(doc_id: str, seed: int) -> int:
    return xxhash.xxh64_intdigest(("sample:" + doc_id).encode(), seed=seed)


def split_hash(doc_id: str) -> int:
    """Uniform in [0, 2**64): the document is in `val` when this is below the cut."""
    return xxhash.xxh64_intdigest(("split:" + doc_id).encode())


def _stats(**counters) -> StageStats:
    s = StageStats("tokenize")
    s.counters.update({k: int(v) for k, v in counters.items()})
    return s


def sample_shard(in_path: str, budget_bytes: int, seed: int, out_path: str) -> TaskResult:
    """Keep the documents with the smallest sample keys whose text fits `budget_bytes` (a heap:
    memory stays at the budget). Writes (key, text) Parquet; key order makes it deterministic."""
    heap: list[tuple[int, str, str]] = []  # (-key, id, text): the largest key is on top
    total = 0
    for doc in storage.read_docs(in_path):
        if not doc.text:
            continue
        item = (-sample_key(doc.id, seed), doc.id, doc.text)
        size = len(doc.text.encode())
        if total + size > budget_bytes and heap and item < heap[0]:
            continue  # larger key than everything kept, and no room
        heapq.heappush(heap, item)
        total += size
        while total > budget_bytes and len(heap) > 1:
            total -= len(heapq.heappop(heap)[2].encode())
    heap.sort(reverse=True)  # ascending key
    table = pa.table({"key": pa.array([-k for k, _, _ in heap], pa.uint64()),
                      "text": pa.array([t for _, _, t in heap], pa.string())})  # typed even when empty
    with storage.atomic_write(out_path) as f:
        pq.write_table(table, f, compression="zstd")
    return TaskResult(stats=[_stats(sample_documents=len(heap), sample_bytes=total)], outputs=[out_path])


def train_tokenizer(sample_paths: list[str], vocab_size: int, special_tokens: tuple[str, ...],
                    out_path: str) -> TaskResult:
    """Train on every sampled text, merged in (key, text) order, and write tokenizer.json."""
    tables = []
    for p in sample_paths:
        tables.append(storage.read_table(p))
    table = pa.concat_tables(tables) if tables else pa.table({"key": pa.array([], pa.uint64()),
                                                              "text": pa.array([], pa.string())})
    rows = sorted(zip(table["key"].to_pylist(), table["text"].to_pylist()))
    if not rows:
        raise ValueError("no document with text to train the tokenizer on; did every document get filtered out?")
    t0 = time.perf_counter()
    tok = train_bpe((t for _, t in rows), vocab_size, special_tokens)
    write_tokenizer(tok, out_path)
    st = _stats(tokenizer_train_documents=len(rows), vocab_size=tok.get_vocab_size())
    st.seconds = time.perf_counter() - t0
    return TaskResult(stats=[st], outputs=[out_path], value=tok.get_vocab_size())


# Per worker process: file sha256 -> [tokenizer, word cache size]. Loading a 32k BPE takes ~0.1 s, and
# tokenizers does not give back a dropped Tokenizer's memory (measured: ~17 MB a reload, ~170 MB with a
# full 200k-word cache), so each process loads each tokenizer once.
_TOKENIZERS: dict[str, list] = {}
_TOKENIZERS_LOCK = threading.Lock()


def cached_tokenizer_and_hash(path: str, word_cache: int = 0, sha256: str | None = None):
    """(tokenizer, sha256 of the file's text): a tokenizer.json is loaded once per process (keyed by
    its content, so a changed file reloads). `word_cache` > 0 sizes a BPE model's word cache (see
    set_word_cache); the cache stays warm across the tasks this process runs. `sha256`: the content
    expected at `path` (the driver's hash of what it wrote); a process that already holds that
    tokenizer neither reads nor hashes the file again, and a file that no longer has that content is
    an error (its tokens would not match the manifest's tokenizer_sha256)."""
    with _TOKENIZERS_LOCK:
        entry = _TOKENIZERS.get(sha256) if sha256 is not None else None
        if entry is not None:
            return _sized(entry, word_cache), sha256
    fs, p = storage.fs_and_path(path)
    with fs.open(p, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()
    if sha256 is not None and key != sha256:
        raise ValueError(f"{path} changed while the stage ran (sha256 {key[:12]}, expected {sha256[:12]}); "
                         f"rerun the step")
    with _TOKENIZERS_LOCK:  # tasks may share a process (threads)
        if key not in _TOKENIZERS:
            if len(_TOKENIZERS) >= 4:
                _TOKENIZERS.clear()
            _TOKENIZERS[key] = [load_tokenizer(path), 0]
        return _sized(_TOKENIZERS[key], word_cache), key


def _sized(entry: list, word_cache: int):
    """The entry's tokenizer with a `word_cache`-word cache (resizing empties the cache: only when the
    size changes). Called with _TOKENIZERS_LOCK held."""
    if word_cache and entry[1] != word_cache:
        entry[:] = [set_word_cache(entry[0], word_cache), word_cache]
    return entry[0]


def cached_tokenizer(path: str, word_cache: int = 0, sha256: str | None = None):
    return cached_tokenizer_and_hash(path, word_cache, sha256)[0]


def set_word_cache(tok, words: int):
    """Let a BPE model cache up to `words` pre-tokenized words (tokenizers' default is 10,000; once
    full it stops adding). Ids are unchanged; on the 75-language bench text a 200,000-word cache
    runs ~11% fewer instructions than the default even with no text repeated (callgrind), at
    ~0.5 KB per cached word. Other models, or a tokenizers without the call, are left as they are."""
    resize = getattr(tok.model, "_resize_cache", None)
    if words > 0 and resize is not None:
        resize(words)
    return tok


def write_tokenizer(tok, path: str) -> str:
    """Write `tok` as tokenizer.json (compact JSON) and remember it for this process; returns its
    sha256, which equals tokenizer_hash(tok)."""
    text = tok.to_str()
    with storage.atomic_write(path, "w") as f:
        f.write(text)
    key = hashlib.sha256(text.encode()).hexdigest()
    with _TOKENIZERS_LOCK:
        _TOKENIZERS[key] = [tok, 0]
    return key


def _batches(in_path: str, batch_docs: int, st: StageStats):
    """(ids, texts, UTF-8 bytes of each text) per `batch_docs` documents, straight from the Parquet
    columns (no Doc objects: a third of the stage's Python time went into building them). Only
    Arrow-to-Arrow calls and buffer views here: pyarrow imports pandas (0.3-0.7 s on this machine)
    the first time it converts a Python value or hands an array to numpy, and a fresh worker would
    pay that inside its first encode task."""
    fs, path = storage.fs_and_path(in_path)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_docs, columns=["id", "text"]):
            nbytes = pc.binary_length(batch.column("text"))
            keep = nbytes.cast(pa.bool_())  # true: some text; false: ""; null: no text (filter drops nulls)
            text = batch.column("text").filter(keep)
            st.docs_in += batch.num_rows
            if len(text) < batch.num_rows:
                st.drops["empty_text"] += batch.num_rows - len(text)  # nothing to encode; counted, not written
            if len(text):
                yield batch.column("id").filter(keep).to_pylist(), text.to_pylist(), _ints(nbytes.filter(keep))


def _ints(arr: pa.Array) -> np.ndarray:
    """A null-free int32/int64 Arrow array as numpy, viewed from its data buffer (see _batches)."""
    dtype = {pa.int32(): np.int32, pa.int64(): np.int64}[arr.type]
    return np.frombuffer(arr.buffers()[1], dtype, len(arr), arr.offset * np.dtype(dtype).itemsize)


def encode_shard(in_path: str, tokenizer_path: str, bos_token: str, seed: int, batch_docs: int, word_cache: int,
                 val_cut: int, keep_lowest: int, tokens_out: str, meta_out: str,
                 tokenizer_sha256: str | None = None) -> TaskResult:
    """Encode one input shard with the batch API. Writes raw tokens (BOS before each document) and
    one META_DTYPE record per document. Returns token histograms over the shuffle key per split
    (by `val_cut`), and the `keep_lowest` train documents with the smallest split hash (so the
    driver can grow a too-small val split). The next batch encodes (in the tokenizer's threads,
    without the GIL) while this one is converted and written; the last batch's conversion is the
    only part with nothing to encode beside it, so batches are small (TokenizeConfig.batch_docs).
    bench/tokenize_speed.py compares the stage with raw encode_batch. `tokenizer_sha256`: the
    content of `tokenizer_path` (see cached_tokenizer_and_hash)."""
    t0 = time.perf_counter()
    tok = cached_tokenizer(tokenizer_path, word_cache, tokenizer_sha256)
    vocab = tok.get_vocab_size()
    dtype = dtype_for_vocab(vocab)
    bos = token_id(tok, bos_token)
    st = StageStats("tokenize")
    metas: list[np.ndarray] = []

    def write(f, ids: list[str], nbytes: np.ndarray, encs) -> None:
        lengths = np.fromiter(map(len, encs), np.int64, len(encs))
        # one pass over all ids of the batch (fromiter over a chain: ~40% cheaper than per-document arrays)
        flat = np.fromiter(chain.from_iterable(e.ids for e in encs), dtype, int(lengths.sum()))
        f.write(np.insert(flat, np.cumsum(lengths) - lengths, bos).tobytes())  # BOS before each document
        meta = np.empty(len(ids), META_DTYPE)
        meta["key"] = np.fromiter((shuffle_key(i, seed) for i in ids), np.uint64, len(ids))
        meta["u"] = np.fromiter((split_hash(i) for i in ids), np.uint64, len(ids))
        meta["length"] = lengths + 1
        meta["text_bytes"] = nbytes
        metas.append(meta)

    def write_meta(meta: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, meta)
        with storage.atomic_write(meta_out) as f:
            f.write(buf.getvalue())

    with ThreadPoolExecutor(1) as pool:
        with storage.atomic_write(tokens_out) as f:
            pending = None  # (ids, text bytes, future encodings) of the batch being encoded
            for ids, texts, nbytes in _batches(in_path, batch_docs, st):
                job = (ids, nbytes, pool.submit(tok.encode_batch_fast, texts, add_special_tokens=False))
                if pending is not None:
                    write(f, pending[0], pending[1], pending[2].result())
                pending = job
            if pending is not None:
                write(f, pending[0], pending[1], pending[2].result())
            meta = np.concatenate(metas) if metas else np.empty(0, META_DTYPE)
            meta_written = pool.submit(write_meta, meta)  # its fsync runs beside the tokens file's
        meta_written.result()

    is_val = meta["u"] < np.uint64(val_cut)
    bins = (meta["key"] >> np.uint64(48)).astype(np.int64)
    hist = {s: sparse_hist(bins[m], meta["length"][m]) for s, m in (("train", ~is_val), ("val", is_val))}
    train = meta[~is_val]
    lowest = train[np.argsort(train["u"], kind="stable")[:keep_lowest]]
    st.docs_out = len(meta)
    st.counters.update(documents=len(meta), tokens=int(meta["length"].sum()),
                       text_bytes=int(meta["text_bytes"].sum()), val_documents=int(is_val.sum()))
    st.seconds = time.perf_counter() - t0
    return TaskResult(stats=[st], outputs=[tokens_out, meta_out],
                      value={"hist": hist, "lowest": lowest, "dtype": dtype.name, "vocab_size": vocab,
                             "documents": len(meta), "val_documents": int(is_val.sum())})


def sparse_hist(bins: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per key bin as (bins uint16, tokens int64) of the non-empty bins: a shard of 10k
    documents sends <= 10k pairs to the driver instead of 65,536 counts."""
    idx, inverse = np.unique(bins, return_inverse=True)
    return idx.astype(np.uint16), np.bincount(inverse, weights=lengths, minlength=len(idx)).astype(np.int64)


def dense_hist(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Sum sparse histograms into one (KEY_BINS,) int64 array."""
    out = np.zeros(KEY_BINS, np.int64)
    for idx, counts in parts:
        np.add.at(out, idx.astype(np.int64), counts)
    return out


def plan_ranges(hist: np.ndarray, shard_tokens: int) -> list[tuple[int, int]]:
    """Split the key bins into consecutive [lo, hi) ranges of about `shard_tokens` tokens each
    (cut at bin edges: each bin holds ~1/65536 of the tokens); empty ranges are left out."""
    total = int(hist.sum())
    if total == 0:
        return []
    n = -(-total // shard_tokens)
    cum = np.cumsum(hist)
    edges = [0] + [int(np.searchsorted(cum, total * k / n)) + 1 for k in range(1, n)] + [KEY_BINS]
    edges = sorted(set(min(e, KEY_BINS) for e in edges))
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if cum[hi - 1] - (cum[lo - 1] if lo else 0) > 0]


def write_shard_range(split: str, bin_lo: int, bin_hi: int, val_cut: int, parts: list[tuple[str, str]],
                      dtype_name: str, out_path: str) -> TaskResult:
    """Gather the `split` documents with key bin in [bin_lo, bin_hi) from every encoded part, order
    them by shuffle key, and write one shard. Memory: this shard's tokens once."""
    t0 = time.perf_counter()
    dtype = np.dtype(dtype_name)
    picked = []  # (keys, part, starts, lengths, text_bytes)
    for p, (tokens_path, meta_path) in enumerate(parts):
        fs, mp = storage.fs_and_path(meta_path)
        with fs.open(mp, "rb") as f:
            meta = np.load(io.BytesIO(f.read()))
        starts = np.cumsum(meta["length"].astype(np.int64)) - meta["length"]
        bins = (meta["key"] >> np.uint64(48)).astype(np.int64)
        in_split = (meta["u"] < np.uint64(val_cut)) == (split == "val")
        m = in_split & (bins >= bin_lo) & (bins < bin_hi)
        if m.any():
            picked.append((meta["key"][m], np.full(int(m.sum()), p), starts[m], meta["length"][m].astype(np.int64),
                           meta["text_bytes"][m]))
    if not picked:
        raise ValueError(f"no {split} documents in key bins [{bin_lo}, {bin_hi}); the plan and the parts disagree")
    keys, part_of, starts, lengths, text_bytes = (np.concatenate(c) for c in zip(*picked))
    order = np.lexsort((starts, part_of, keys))  # by key; ties (equal ids) by input position
    out = np.empty(int(lengths.sum()), dtype)
    doc_starts = (np.cumsum(lengths[order]) - lengths[order]).astype(np.uint64)
    mms = {p: open_raw(parts[p][0], dtype) for p in np.unique(part_of).tolist()}
    pos = 0
    for p, s, n in zip(part_of[order].tolist(), starts[order].tolist(), lengths[order].tolist()):
        out[pos : pos + n] = mms[p][s : s + n]
        pos += n
    sha = write_shard(out_path, out, doc_starts)
    row = {"tokens": len(out), "documents": len(order), "text_bytes": int(text_bytes.sum()),
           "dtype": dtype.name, "sha256": sha}
    st = _stats(shard_tokens=len(out), shard_documents=len(order))
    st.seconds = time.perf_counter() - t0
    nbytes = storage.fs_and_path(out_path)[0].size(storage.fs_and_path(out_path)[1])
    return TaskResult(stats=[st], outputs=[out_path, out_path[:-4] + ".idx"], bytes_out=nbytes, checksum=sha,
                      value=row)
