"""MinHash signature speed: tokenmill's batched numpy MinHasher beside datasketch's default MinHash.

Same documents for both (shared/data/neardup articles, ~690 words, repeated to --docs), same
shingles (lowercased `\\w+` word 5-grams), 112 permutations, one core. Peer: datasketch
`MinHash(num_perm=112)` with `update()` per shingle (its default SHA-1 hashing); its time
includes building the shingle strings, as ours includes finding and hashing the words.

Run: .venv/bin/python bench/minhash_speed.py [--docs 800] [--max-words 100]
Floor checked: tokenmill >= 5x datasketch docs/s.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from tokenmill.stages.dedup.minhash import MinHasher


def datasketch_signatures(texts: list[str], num_perm: int, ngram: int = 5) -> list:
    from datasketch import MinHash

    out = []
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        m = MinHash(num_perm=num_perm)
        for i in range(max(1, len(words) - ngram + 1)):
            m.update(" ".join(words[i : i + ngram]).encode("utf-8"))
        out.append(m)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "neardup"))
    ap.add_argument("--docs", type=int, default=800)
    ap.add_argument("--num-perm", type=int, default=112)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--max-words", type=int, default=0, help="cut each document to its first N words (0: whole)")
    args = ap.parse_args()
    base = [json.loads(line)["text"] for line in open(Path(args.data) / "docs.jsonl")]
    if args.max_words:
        base = [" ".join(t.split()[: args.max_words]) for t in base]
    texts = (base * (args.docs // len(base) + 1))[: args.docs]
    words = sum(len(re.findall(r"\w+", t)) for t in texts) / len(texts)

    hasher = MinHasher(num_perm=args.num_perm)
    hasher.signatures(texts[:8])  # build the per-process tables once (~0.1 s), as a worker would
    t = time.perf_counter()
    for lo in range(0, len(texts), args.batch):
        hasher.signatures(texts[lo : lo + args.batch])
    ours = len(texts) / (time.perf_counter() - t)

    peer_docs = texts[: max(50, args.docs // 8)]  # the peer is slow; time it on a prefix
    t = time.perf_counter()
    datasketch_signatures(peer_docs, args.num_perm)
    peer = len(peer_docs) / (time.perf_counter() - t)

    ratio = ours / peer
    print(f"documents: {len(texts)} (~{words:.0f} words each), num_perm={args.num_perm}, 1 core")
    print(f"tokenmill MinHasher (batched numpy):    {ours:9.0f} docs/s")
    print(f"datasketch MinHash (update per shingle): {peer:8.0f} docs/s")
    print(f"ratio: {ratio:.1f}x (floor 5x): {'PASS' if ratio >= 5 else 'FAIL'}")
    return 0 if ratio >= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
