"""Benchmark decontamination: which benchmark items a document contains, by word n-grams.

GPT-3's rule: a document is contaminated when it shares any `ngram`-word sequence (13) with a
benchmark item. Words are normalised the same way on both sides (`words`: lowercased,
punctuation and symbols removed, split on whitespace). An item shorter than `ngram` words but
of at least `min_item_words` words has no 13-gram: the document must contain the whole item;
items shorter than that (an answer "B", a choice "Paris") are left out, counted as `too_short`.

Benchmark files: JSONL (every string field of a line, nested lists and objects too, is a piece
of text of that item: question, choices and answer each match on their own, no n-gram spans two
fields) or .txt (one item a line); .gz compressed too.

The index is numbers, not strings: each word is hashed once (xxh3, 64 bits), an n-gram's key
is the XOR of its words' hashes rotated by their position, and the keys of each length sit in a
sorted uint64 array, looked up with numpy's searchsorted. With 10,000 items it takes ~1 s to
build and a few MB (bench/decontaminate_speed.py; figures in BENCHMARKS.md).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import xxhash

log = logging.getLogger(__name__)

_PUNCT = re.compile(r"[^\w\s]+")
SUFFIXES = (".jsonl", ".jsonl.gz", ".txt", ".txt.gz")


def words(text: str) -> list[str]:
    """Lowercased, punctuation and symbols stripped, split on whitespace."""
    return _PUNCT.sub("", text.lower()).split()


def _word_hashes(ws: list[str]) -> np.ndarray:
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(w.encode()) for w in ws), dtype=np.uint64, count=len(ws))


def _rotl(x: np.ndarray, k: int) -> np.ndarray:
    if k == 0:
        return x
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


def ngram_keys(hashes: np.ndarray, lengths: list[int]) -> dict[int, np.ndarray]:
    """Keys of every window of each length in `lengths` (ascending): the key of words i..i+L-1 is
    XOR over k < L of rotl(hash[i+k], k), grown one word at a time."""
    out: dict[int, np.ndarray] = {}
    n = len(hashes)
    acc = None
    want = set(lengths)
    for k in range(max(lengths) if lengths else 0):
        m = n - k  # windows of length k+1
        if m <= 0:
            break
        acc = _rotl(hashes[k:], k) if acc is None else acc[:m] ^ _rotl(hashes[k:], k)
        if k + 1 in want:
            out[k + 1] = acc
    return out


def iter_pieces(path: str):
    """(line number, text) of every piece of text in a benchmark file; ValueError naming the
    line when a JSONL line is not JSON."""
    opener = gzip.open if path.endswith(".gz") else open
    jsonl = path.endswith((".jsonl", ".jsonl.gz"))
    with opener(path, "rt", encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not jsonl:
                yield no, line.strip()
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {no}: not JSON ({e.msg})") from None
            for text in _strings(obj):
                yield no, text


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def check_benchmark(path: str) -> int:
    """Read a benchmark file as the index will; returns its number of items (lines). Raises
    ValueError saying what is wrong (missing, unreadable, not JSON, empty)."""
    if not path.endswith(SUFFIXES):
        raise ValueError(f"{path}: a benchmark file is .jsonl or .txt (optionally .gz)")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    items = set()
    try:
        for no, _ in iter_pieces(path):
            items.add(no)
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise ValueError(f"{path}: cannot read it: {e}") from None
    if not items:
        raise ValueError(f"{path}: has no items")
    return len(items)


@dataclass
class NgramIndex:
    """Keys per n-gram length (sorted uint64) and, for each key, which benchmark it came from."""

    names: list[str]  # benchmark names, by number
    ngram: int
    keys: dict[int, np.ndarray] = field(default_factory=dict)  # length -> sorted keys
    owners: dict[int, np.ndarray] = field(default_factory=dict)  # length -> benchmark number of each key (uint16)
    stats: Counter = field(default_factory=Counter)  # items, pieces, ngram_pieces, whole_pieces, too_short

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys.values()) + sum(a.nbytes for a in self.owners.values())

    def match(self, text: str) -> tuple[list[int], str | None]:
        """(the benchmarks whose items the text contains, the first matching words), or ([], None)."""
        ws = words(text)
        if not ws or not self.keys:
            return [], None
        lengths = sorted(L for L in self.keys if L <= len(ws))
        if not lengths:
            return [], None
        found: set[int] = set()
        first: tuple[int, int] | None = None  # (position, length)
        for L, q in ngram_keys(_word_hashes(ws), lengths).items():
            keys, owners = self.keys[L], self.owners[L]
            left = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
            hit = np.nonzero(keys[left] == q)[0]
            if hit.size:
                for i in hit:  # a key may belong to several benchmarks: its run of equal keys
                    j = int(left[i])
                    while j < len(keys) and keys[j] == q[i]:
                        found.add(int(owners[j]))
                        j += 1
                if first is None or hit[0] < first[0]:
                    first = (int(hit[0]), L)
        if not found:
            return [], None
        i, L = first
        return sorted(found), " ".join(ws[i:i + L])


def build_index(files: list[str], names: list[str], ngram: int = 13, min_item_words: int = 8) -> NgramIndex:
    """The index of every item of `files` (named `names`, e.g. the file names)."""
    if len(files) > 65535:
        raise ValueError("benchmarks: at most 65,535 files")
    index = NgramIndex(list(names), ngram)
    parts: dict[int, list[tuple[np.ndarray, int]]] = {}
    for b, path in enumerate(files):
        items = set()
        for no, text in iter_pieces(path):
            items.add(no)
            index.stats["pieces"] += 1
            ws = words(text)
            if len(ws) >= ngram:
                L = ngram
                index.stats["ngram_pieces"] += 1
            elif len(ws) >= min_item_words:
                L = len(ws)
                index.stats["whole_pieces"] += 1
            else:
                index.stats["too_short"] += 1
                continue
            keys = ngram_keys(_word_hashes(ws), [L])[L]
            parts.setdefault(L, []).append((keys if L == ngram else keys[:1], b))
        index.stats["items"] += len(items)
    for L, chunks in parts.items():
        keys = np.concatenate([k for k, _ in chunks])
        owners = np.concatenate([np.full(len(k), b, dtype=np.uint16) for k, b in chunks])
        order = np.argsort(keys, kind="stable")
        keys, owners = keys[order], owners[order]
        index.keys[L], index.owners[L] = keys, owners
    log.info("decontamination index: %d items, %d pieces (%d by %d-grams, %d whole, %d too short), %.1f MB",
             index.stats["items"], index.stats["pieces"], index.stats["ngram_pieces"], ngram,
             index.stats["whole_pieces"], index.stats["too_short"], index.nbytes / 1e6)
    return index

