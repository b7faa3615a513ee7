"""MinHash signature speed: tokenmill's batched numpy MinHasher beside datasketch and rensa, one core.

Same documents on every side (the 161 real articles of shared/data/neardup, ~690 words each,
each side hashes all of them per round), same shingles (lowercased `\\w+` word 5-grams),
the same number of permutations (112). Peers, each the way its own docs recommend for bulk:

- datasketch `MinHash.bulk(shingle_lists, num_perm=112)` (one `update_batch` per document),
  with its default hash (SHA-1, `sha1_hash32`) and with `hashfunc=xxhash.xxh32_intdigest`;
- rensa `RMinHash.digest_matrix_from_token_sets(shingle_lists, num_perm=112, seed=1)` (Rust,
  its bulk path: a row-major digest matrix, no Python object per document).

Each peer is timed twice: "from text" (finding the words and building the shingle strings is
timed, as ours includes finding and hashing the words), and "shingles given" (the lists are
built before the clock starts: the peer's best case, not the same work, printed to show
where the peers spend their time). Rounds alternate the order of the
sides; the median round and the spread (min-max) are printed. Time is CPU time of this
process (`time.process_time`), not wall time: on a shared 2-core machine wall time measures
the neighbours too (load 16 seen), and every side here runs on one thread (rensa with
RAYON_NUM_THREADS=1). The floor compares ours with
datasketch's fastest "from text" variant (text in, signatures out on both sides): at least
3x, else exit 1.

Same work: each side's signatures estimate the brute-force Jaccard of pairs.jsonl; the mean
absolute error is printed per side (MinHash with 112 permutations: ~0.03 expected).

A round of ours takes ~10-20 ms of CPU, so the default is 15 rounds (with 5, the medians moved by
tens of percent between runs on the shared machine); the load average before and after is printed.

Run: .venv/bin/python bench/minhash_speed.py [--rounds 15] [--num-perm 112]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # rensa's batch paths use Rayon: one core, like the rest

import numpy as np  # noqa: E402

from tokenmill.stages.dedup.minhash import MinHasher

FLOOR = 3.0


def shingles(text: str, ngram: int = 5) -> list[str]:
    words = re.findall(r"\w+", text.lower())
    return [" ".join(words[i : i + ngram]) for i in range(max(1, len(words) - ngram + 1))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "neardup"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--num-perm", type=int, default=112)
    args = ap.parse_args()
    docs = [json.loads(line) for line in open(Path(args.data) / "docs.jsonl")]
    texts = [d["text"] for d in docs]
    words = sum(len(re.findall(r"\w+", t)) for t in texts) / len(texts)
    P = args.num_perm

    import xxhash
    from datasketch import MinHash
    from rensa import RMinHash

    hasher = MinHasher(num_perm=P)
    hasher.signatures(texts[:8])  # the per-process lookup table (~0.3 s), built once per worker
    given_str = [shingles(t) for t in texts]
    given_bytes = [[s.encode("utf-8") for s in sh] for sh in given_str]

    sides = {
        "tokenmill MinHasher (from text)": lambda: hasher.signatures(texts),
        "datasketch bulk, SHA-1 (from text)":
            lambda: MinHash.bulk([[s.encode("utf-8") for s in shingles(t)] for t in texts], num_perm=P),
        "datasketch bulk, SHA-1 (shingles given)": lambda: MinHash.bulk(given_bytes, num_perm=P),
        "datasketch bulk, xxh32 (from text)":
            lambda: MinHash.bulk([[s.encode("utf-8") for s in shingles(t)] for t in texts], num_perm=P,
                                 hashfunc=xxhash.xxh32_intdigest),
        "datasketch bulk, xxh32 (shingles given)":
            lambda: MinHash.bulk(given_bytes, num_perm=P, hashfunc=xxhash.xxh32_intdigest),
        "rensa RMinHash matrix (from text)":
            lambda: RMinHash.digest_matrix_from_token_sets([shingles(t) for t in texts], P, 1),
        "rensa RMinHash matrix (shingles given)":
            lambda: RMinHash.digest_matrix_from_token_sets(given_str, P, 1),
    }
    names = list(sides)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {n: [] for n in names}
    results = {}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t = time.process_time()
            results[n] = sides[n]()
            times[n].append(time.process_time() - t)

    # same work: Jaccard estimates against the brute-force pairs
    idx = {d["id"]: i for i, d in enumerate(docs)}
    pairs = [json.loads(line) for line in open(Path(args.data) / "pairs.jsonl")]
    sigs = {
        "tokenmill": np.asarray(results[names[0]]),
        "datasketch SHA-1": np.array([m.hashvalues for m in results[names[2]]]),
        "datasketch xxh32": np.array([m.hashvalues for m in results[names[4]]]),
        "rensa": np.array(results[names[6]].to_rows()),
    }
    err = {k: float(np.mean([abs(np.mean(s[idx[q["a"]]] == s[idx[q["b"]]]) - q["jaccard"]) for q in pairs]))
           for k, s in sigs.items()}

    rate = {n: [len(texts) / t for t in times[n]] for n in names}
    med = {n: statistics.median(rate[n]) for n in names}
    print(f"documents: {len(texts)} real articles (~{words:.0f} words each), num_perm={P}, 1 core, "
          f"{args.rounds} rounds, order alternating; load average (1, 5, 15 min) before "
          f"{'/'.join(f'{x:.1f}' for x in load_before)}, after {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'':42s}{'docs/CPU-s med':>14s}{'min-max':>18s}{'ours / this':>13s}")
    for n in names:
        ratios = [a / b for a, b in zip(rate[names[0]], rate[n])]
        print(f"{n:42s}{med[n]:14,.0f}{min(rate[n]):9,.0f}-{max(rate[n]):<8,.0f}"
              f"{statistics.median(ratios):8.1f}x ({min(ratios):.1f}-{max(ratios):.1f})")
    print("mean |estimated - brute-force Jaccard| over", len(pairs), "pairs:",
          ", ".join(f"{k} {v:.3f}" for k, v in err.items()))
    best = max((n for n in names if n.startswith("datasketch") and "from text" in n), key=lambda n: med[n])
    ratios = [a / b for a, b in zip(rate[names[0]], rate[best])]
    ratio = statistics.median(ratios)
    print(f"headline: ours / datasketch's fastest ({best}): {ratio:.1f}x, rounds {min(ratios):.1f}-"
          f"{max(ratios):.1f}x (floor {FLOOR}x): {'PASS' if ratio >= FLOOR else 'FAIL'}")
    return 0 if ratio >= FLOOR else 1


if __name__ == "__main__":
    sys.exit(main())
