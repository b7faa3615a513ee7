"""MinHash signatures: words and shingles as the regex defines them, Jaccard estimates as datasketch's."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest

from tokenmill.stages.dedup.minhash import (
    EMPTY, MinHasher, band_keys, collision_probability, estimate_jaccard, exact_keys, lsh_params, shingle_hashes,
    word_hashes,
)
from tokenmill.stages.dedup.signatures import SIG_VERSION

VOCAB = [f"w{i}" for i in range(400)]


def shingles(text: str, n: int = 5) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()


def true_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def edited_pairs(rng: random.Random, n: int = 40) -> list[tuple[str, str]]:
    """Pairs of 300-word texts with 0-40% of the words replaced: Jaccard spread over 0.05..1."""
    out = []
    for i in range(n):
        a = [rng.choice(VOCAB) for _ in range(300)]
        b = [w if rng.random() >= 0.4 * i / n else rng.choice(VOCAB) for w in a]
        out.append((" ".join(a), " ".join(b)))
    return out


def test_words_match_the_regex_including_unicode():
    texts = ["Hello, World! it’s 3.14", "", "İstanbul ÇAĞ naïve café_au-lait",
             "emoji 🙂 mid🙂word 𝔘nicode",
             "日本語 テキスト", "   ", "a"]
    words, offsets = word_hashes(texts, seed=1)
    for i, t in enumerate(texts):
        assert offsets[i + 1] - offsets[i] == len(re.findall(r"\w+", t.lower())), t
    # same word → same hash, wherever it is
    w2, o2 = word_hashes(["world hello"], seed=1)
    assert w2[0] == words[1] and w2[1] == words[0]


def test_context_dependent_lowercase_matches_str_lower_in_any_batch():
    """'Σ' lowers to 'ς' at a word's end and 'İ' to two code points: those texts follow str.lower()
    (words and shingles as the regex finds them), whatever else is in the batch."""
    special = ["ΟΔΟΣ ΣΑ Σ οδος", "İstanbul İİ ıi", "ΟΔΟΣ μια δύο τρεις τέσσερις πέντε"]
    plain = ["plain ascii words here", "Ünïcode ÀÉÎ mixed case"]
    batch = [plain[0], special[0], plain[1], special[1], special[2]]
    words, offsets = word_hashes(batch, seed=1)
    by_word = {}
    for i, t in enumerate(batch):
        ref = re.findall(r"\w+", t.lower())
        assert offsets[i + 1] - offsets[i] == len(ref), t
        for w, h in zip(ref, words[offsets[i] : offsets[i + 1]]):
            assert by_word.setdefault(w, h) == h, w
    assert len(set(by_word.values())) == len(by_word)  # 'οδος' and 'οδοσ' differ, as in str.lower()
    alone = [word_hashes([t], seed=1)[0] for t in batch]
    assert np.array_equal(np.concatenate(alone), words)
    sh, sh_off = shingle_hashes(words, offsets, 3)
    by_gram = {}
    for i, t in enumerate(batch):
        ref = re.findall(r"\w+", t.lower())
        grams = [" ".join(ref[k : k + 3]) for k in range(max(1, len(ref) - 2))]
        assert sh_off[i + 1] - sh_off[i] == len(grams)
        for g, h in zip(grams, sh[sh_off[i] : sh_off[i + 1]]):
            assert by_gram.setdefault(g, h) == h, g
    assert len(set(by_gram.values())) == len(by_gram)


def test_exact_keys_ignore_case_punctuation_and_spacing():
    texts = ["The cat, sat.", "the   CAT sat", "the cat sat on", "sat the cat"]
    words, offsets = word_hashes(texts, seed=1)
    keys = exact_keys(words, offsets)
    assert keys[0] == keys[1]
    assert len({keys[0], keys[2], keys[3]}) == 3


def test_jaccard_estimates_agree_with_datasketch():
    from datasketch import MinHash

    num_perm = 112
    rng = random.Random(7)
    pairs = edited_pairs(rng)
    sigs = MinHasher(num_perm=num_perm, seed=3).signatures([t for p in pairs for t in p])
    tol = 3 / np.sqrt(num_perm)
    worst = 0.0
    for i, (a, b) in enumerate(pairs):
        ms = []
        for text in (a, b):
            m = MinHash(num_perm=num_perm)
            for s in shingles(text):
                m.update(s.encode())
            ms.append(m)
        ours = float(estimate_jaccard(sigs[2 * i], sigs[2 * i + 1]))
        theirs = ms[0].jaccard(ms[1])
        assert abs(ours - theirs) <= tol, (i, ours, theirs, true_jaccard(a, b))
        worst = max(worst, abs(ours - true_jaccard(a, b)))
    assert worst <= tol


def test_signatures_are_deterministic_and_batch_independent():
    rng = random.Random(1)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 60))) for _ in range(50)]
    h = MinHasher(num_perm=64, ngram=3, seed=5)
    whole = h.signatures(texts)
    pieces = np.concatenate([h.signatures(texts[i : i + 7]) for i in range(0, 50, 7)])
    assert np.array_equal(whole, pieces)
    assert not np.array_equal(whole, MinHasher(num_perm=64, ngram=3, seed=6).signatures(texts))


@pytest.mark.parametrize("num_perm", [1, 7, 2048])
def test_signatures_are_the_minima_of_the_affine_permutations(num_perm):
    """Every (document, permutation) value is min over its shingles of (a*x + b) mod 2^32, also for
    documents cut by the permutation blocks (2048 permutations: blocks of 512 shingles)."""
    rng = np.random.default_rng(num_perm)
    counts = np.array([0, 1, 3, 700, 0, 511, 513, 1, 1200, 2, 0])
    sh_off = np.concatenate(([0], np.cumsum(counts)))
    x = rng.integers(0, 1 << 32, sh_off[-1], dtype=np.uint64).astype(np.uint32)
    h = MinHasher(num_perm=num_perm, seed=4)
    a, b = h._perms
    assert a.dtype == b.dtype == np.uint32 and (a & 1).all()
    sig = h.signatures_from_shingles(x, sh_off)
    assert sig.shape == (len(counts), num_perm) and sig.dtype == np.uint32 and sig.flags.c_contiguous
    for d, (lo, hi) in enumerate(itertools.pairwise(sh_off)):
        if lo == hi:
            assert (sig[d] == EMPTY).all()
            continue
        ref = (x[lo:hi, None].astype(np.uint64) * a.astype(np.uint64) + b) % (1 << 32)
        assert np.array_equal(sig[d], ref.min(axis=0)), d
    with pytest.raises(TypeError, match="uint32"):  # 64-bit hashes are not cut to 32 bits silently
        h.signatures_from_shingles(x.astype(np.uint64), sh_off)


def test_signature_values_are_pinned_to_sig_version():
    """Persisted signatures and exact keys are reused across runs and machines when SIG_VERSION
    matches: changing their values for the same text needs a new SIG_VERSION (and new values here)."""
    h = MinHasher(num_perm=8, ngram=3, seed=1)
    sig, keys, words = h.signatures_and_keys(["The quick brown fox jumps over the lazy dog.", "Ünïcode ΟΔΟΣ text"])
    assert SIG_VERSION == 2
    assert sig.tolist() == [
        [115045058, 1124545376, 85049051, 265803050, 317888489, 1031398535, 490681167, 690211513],
        [1414832396, 3433610855, 981794125, 2241450425, 2295161187, 2486122907, 355645544, 298004628],
    ]
    assert [k.hex() for k in keys] == ["bf9999ffe5abbc2bce0f4bab8e8584b9", "22f83d117e089f0e26615227c461ad5c"]
    assert words.tolist() == [9, 3]


def test_short_and_empty_documents():
    h = MinHasher(num_perm=16, ngram=5)
    sig = h.signatures(["", "two words", "Two, words!", "... !!"])
    assert (sig[0] == EMPTY).all() and (sig[3] == EMPTY).all()
    assert np.array_equal(sig[1], sig[2]) and not (sig[1] == EMPTY).all()


def test_band_keys_equal_exactly_when_band_rows_equal():
    sig = np.arange(2 * 12, dtype=np.uint32).reshape(2, 12)
    sig[1, :4] = sig[0, :4]  # band 0 equal, bands 1, 2 differ
    keys = band_keys(sig, bands=3, rows=4)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    constant = np.zeros((1, 12), np.uint32)
    assert len(set(band_keys(constant, 3, 4)[0])) == 3  # the band index is part of the key
    with pytest.raises(ValueError, match="bands\\*rows"):
        band_keys(sig, bands=4, rows=4)


def test_lsh_params_and_collision_probability():
    from datasketch import MinHashLSH

    b, r = lsh_params(0.8, 112)
    peer = MinHashLSH(threshold=0.8, num_perm=112)
    assert (b, r) == (peer.b, peer.r)  # the same optimal-parameter search as datasketch
    assert collision_probability(0.9, b, r) > 0.5 > 0.01 > collision_probability(0.4, b, r)
    assert collision_probability(0.8, 14, 8) == pytest.approx(1 - (1 - 0.8**8) ** 14)
