"""MinHash signatures and LSH band keys, vectorised over batches of documents.

In: document texts. Out: per document a (num_perm,) uint32 MinHash signature over its word
n-gram shingles, a 16-byte exact key (same key ⇔ same word sequence), and (bands,) uint64
band keys for LSH. Words are the lowercased `\\w+` runs, as `re.findall(r"\\w+", text.lower())`
finds them (the brute-force ground truth in shared/data/neardup uses the same words).

Speed: a batch of texts is hashed at once with numpy (UTF-32 code points → lowercase word
characters from one lookup table → polynomial prefix hashes → one uint64 per word → one
uint32 per shingle), then all permutations are applied with 32-bit multiply-add in
cache-sized (num_perm, block) blocks, reduced per document along contiguous rows.
Speed against datasketch: bench/minhash_speed.py (figures in BENCHMARKS.md).

The i-th permutation is h_i(x) = (a_i * x + b_i) mod 2^32 with a_i odd (a bijection of the
32-bit values, the "affine32" scheme of datasketch 2.0), x the shingle's 32-bit hash (the high
half of a splitmix64-mixed 64-bit hash); the signature keeps min_x h_i(x).
P[sig_a[i] == sig_b[i]] ≈ Jaccard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

_LOWER_WORD: np.ndarray | None = None
_POWERS: tuple[np.ndarray, np.ndarray] | None = None
_U64 = np.uint64
_U32 = np.uint32
EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document without words
_POLY = _U64(0x100000001B3)  # odd multiplier of the code-point polynomial hash
_POLY_INV = _U64(pow(0x100000001B3, -1, 1 << 64))
_BLOCK_VALUES = 1 << 20  # permutation block: (num_perm, 2^20 / num_perm) uint32 = 4 MB
# the only code points whose lowercase depends on more than the code point itself in str.lower():
# 'İ' lowers to two characters, 'Σ' to 'ς' at the end of a word and 'σ' elsewhere
_CONTEXT_LOWER = ("\u0130", "\u03a3")


def exact_keys(words: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """16-byte key per document: xxh3-128 over its 64-bit word hashes, so two documents get the
    same key iff their lowercased `\\w+` word sequences are equal (punctuation, spacing and case
    ignored), up to 64-bit word-hash collisions."""
    return [xxhash.xxh3_128_digest(words[lo:hi].tobytes()) for lo, hi in zip(offsets[:-1], offsets[1:])]


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wraps mod 2^64)."""
    x = x ^ (x >> _U64(30))
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


def _seeded_u64(seed: int, n: int, salt: int) -> np.ndarray:
    """n deterministic uint64 values for (seed, salt), independent of numpy's RNG versions."""
    base = np.arange(n, dtype=_U64) + _U64((seed * 1_000_003 + salt * 7919) & 0xFFFFFFFFFFFFFFFF)
    return mix64(mix64(base) + _U64(0x9E3779B97F4A7C15))


def _lower_word_table() -> np.ndarray:
    """(0x110000,) uint32: for a `\\w` code point (re's rule: isalnum() or '_') its lowercase
    code point, 0 for any other. str.lower() keeps whether a code point is `\\w`, and maps
    each code point to one code point but for `_CONTEXT_LOWER`. Built once per process: ~0.4 s, 4.4 MB."""
    global _LOWER_WORD
    if _LOWER_WORD is None:
        every = "".join(map(chr, range(0x110000)))
        is_word = np.fromiter(map(str.isalnum, every), bool, count=0x110000)
        is_word[ord("_")] = True
        for c in _CONTEXT_LOWER:  # never looked up: texts holding them are lowered first
            every = every.replace(c, c.lower()[0])
        lowered = every.lower()
        if len(lowered) != 0x110000:
            raise RuntimeError("str.lower() changed the length of single code points: unsupported Python")
        table = np.frombuffer(lowered.encode("utf-32-le", "surrogatepass"), "<u4").astype(_U32)
        table[~is_word] = 0
        _LOWER_WORD = table
    return _LOWER_WORD


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P^k and P^-k mod 2^64 for k < n, cached per process and grown by doubling."""
    global _POWERS
    if _POWERS is None or _POWERS[0].size < n:
        size = max(n, 2 * (_POWERS[0].size if _POWERS else 1 << 16))
        pw, inv = np.empty(size, _U64), np.empty(size, _U64)
        pw[0] = inv[0] = 1
        np.cumprod(np.full(size - 1, _POLY, _U64), out=pw[1:])
        np.cumprod(np.full(size - 1, _POLY_INV, _U64), out=inv[1:])
        _POWERS = (pw, inv)
    return _POWERS


def word_hashes(texts: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint64 hash of every lowercased `\\w+` word of every text, and (D+1,) word offsets per doc.

    One numpy pass over the concatenated UTF-32 code points: the lowercase word characters from
    a lookup table (0 elsewhere), prefix polynomial hashes H[k] = sum_{j<k} c_j * P^j mod 2^64,
    word [s, e) → (H[e] - H[s]) * P^-s, then mixed. Texts holding a code point whose lowercase
    needs context (`_CONTEXT_LOWER`) are lowered with str.lower() first.
    """
    texts = [t.lower() if any(c in t for c in _CONTEXT_LOWER) else t for t in texts]
    cps = np.frombuffer((" " + " ".join(texts) + " ").encode("utf-32-le", "surrogatepass"), "<u4")
    n = cps.size
    low = _lower_word_table()[cps]
    is_word = low.astype(bool)
    # document d owns code points [bounds[d], bounds[d] + len(texts[d])); bounds[D] = n
    bounds = np.cumsum([1] + [len(t) + 1 for t in texts])
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1  # cps[0] and cps[-1] are spaces
    starts, ends = edges[0::2], edges[1::2]
    offsets = np.searchsorted(starts, bounds).astype(np.int64)
    if starts.size == 0:
        return np.zeros(0, _U64), offsets
    powers, inv_powers = _powers(n + 1)
    prefix = np.zeros(n + 1, _U64)
    np.multiply(low, powers[:n], out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    words = (prefix[ends] - prefix[starts]) * inv_powers[starts]
    words ^= _U64(seed & 0xFFFFFFFFFFFFFFFF)
    return mix64(words), offsets


def shingle_hashes(words: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """uint32 hash per word n-gram (order-sensitive) and (D+1,) shingle offsets per doc.

    A document with 1..ngram-1 words gets one shingle of all its words; 0 words: none.
    The n-gram sums are taken over the whole word array at once (ngram shifted multiply-adds),
    then the n-grams starting inside a document and ending in it are kept.
    """
    mult = _seeded_u64(ngram, ngram, salt=1) | _U64(1)
    counts = np.diff(offsets)
    n_sh = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    sh_off = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(n_sh, out=sh_off[1:])
    total = int(sh_off[-1])
    if total == 0:
        return np.zeros(0, _U32), sh_off
    n = words.size
    padded = np.concatenate((words, np.zeros(ngram - 1, _U64)))
    sums = words * mult[0]
    for j in range(1, ngram):
        sums += padded[j : j + n] * mult[j]
    # shingle k of doc d starts at word offsets[d] + k
    first = np.arange(total, dtype=np.int64) + np.repeat(offsets[:-1] - sh_off[:-1], n_sh)
    out = sums[first]
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if short.size:  # their one shingle stops at the document's last word
        lo, cnt = offsets[short], counts[short]
        acc = np.zeros(short.size, _U64)
        for j in range(ngram - 1):
            acc += np.where(j < cnt, padded[lo + j] * mult[j], _U64(0))
        out[sh_off[short]] = acc
    return (mix64(out) >> _U64(32)).astype(_U32), sh_off


@dataclass(frozen=True)
class MinHasher:
    """num_perm multiply-add permutations from `seed`; same seed → same signatures anywhere."""

    num_perm: int = 112
    ngram: int = 5
    seed: int = 1

    def __post_init__(self):
        if self.num_perm < 1 or self.ngram < 1:
            raise ValueError(f"num_perm and ngram must be >= 1, got {self.num_perm}, {self.ngram}")

    @property
    def _perms(self) -> tuple[np.ndarray, np.ndarray]:
        a = (_seeded_u64(self.seed, self.num_perm, salt=2) >> _U64(32)).astype(_U32) | _U32(1)
        b = (_seeded_u64(self.seed, self.num_perm, salt=3) >> _U64(32)).astype(_U32)
        return a, b

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(D, num_perm) uint32 signatures; a document without words gets all EMPTY."""
        return self.signatures_and_keys(texts)[0]

    def signatures_and_keys(self, texts: list[str]) -> tuple[np.ndarray, list[bytes], np.ndarray]:
        """Signatures, exact keys (see `exact_keys`) and (D,) word counts, in one pass."""
        words, w_off = word_hashes(texts, self.seed)
        shingles, sh_off = shingle_hashes(words, w_off, self.ngram)
        return self.signatures_from_shingles(shingles, sh_off), exact_keys(words, w_off), np.diff(w_off)

    def signatures_from_shingles(self, shingles: np.ndarray, sh_off: np.ndarray) -> np.ndarray:
        """(D, num_perm) uint32 minima of h_i over each document's uint32 shingle hashes.

        Permutations run along rows of a (num_perm, block) array: the per-document minima are
        then reductions over contiguous runs (the (block, num_perm) layout, reduced with reduceat
        along axis 0, measured 4-5x slower on the 161 documents of shared/data/neardup)."""
        if not isinstance(shingles, np.ndarray) or shingles.dtype != _U32 or shingles.ndim != 1:
            raise TypeError(f"shingles must be a 1-d uint32 array (shingle_hashes), got "
                            f"{getattr(shingles, 'dtype', type(shingles).__name__)}")
        a, b = self._perms
        n_docs = len(sh_off) - 1
        sig = np.full((self.num_perm, n_docs), EMPTY, _U32)
        nonempty = np.flatnonzero(np.diff(sh_off) > 0)
        first = np.asarray(sh_off, np.int64)[nonempty]  # increasing: where each document begins
        block = max(256, _BLOCK_VALUES // self.num_perm)
        tmp = np.empty((self.num_perm, min(block, shingles.size)), _U32)
        for lo in range(0, shingles.size, block):
            x = shingles[lo : lo + block]
            t = tmp[:, : x.size]
            np.multiply(a[:, None], x[None, :], out=t)  # wraps mod 2^32
            t += b[:, None]
            i0 = int(np.searchsorted(first, lo, side="right")) - 1
            i1 = int(np.searchsorted(first, lo + x.size, side="left"))
            seg = np.maximum(first[i0:i1] - lo, 0)
            part = np.minimum.reduceat(t, seg, axis=1)  # (num_perm, documents in block)
            d = nonempty[i0:i1]
            sig[:, d] = np.minimum(sig[:, d], part)
        return np.ascontiguousarray(sig.T)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(D, bands) uint64 keys: band i of two docs equal ⇔ their rows [i*r, (i+1)*r) are equal
    (up to 64-bit hash collisions). The band index is mixed in, so keys of different bands differ."""
    if sigs.shape[1] < bands * rows:
        raise ValueError(f"signatures have {sigs.shape[1]} values, bands*rows needs {bands * rows}")
    out = np.empty((sigs.shape[0], bands), _U64)
    for i in range(bands):
        h = np.full(sigs.shape[0], (0x51ED270B27ACB3D5 * (i + 1)) & 0xFFFFFFFFFFFFFFFF, _U64)
        for j in range(rows):
            h = mix64(h ^ sigs[:, i * rows + j].astype(_U64))
        out[:, i] = h
    return out


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature positions; works row-wise on (n, num_perm) arrays."""
    return (sig_a == sig_b).mean(axis=-1)


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positives + false negatives at `threshold` (datasketch's search)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def collision_probability(jaccard: float, bands: int, rows: int) -> float:
    """P[two docs share at least one band] = 1 - (1 - J^r)^b."""
    return 1.0 - (1.0 - jaccard**rows) ** bands
