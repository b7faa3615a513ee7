"""Decontamination speed and memory: tokenmill's decontaminate stage beside datatrove's NGramsDecontFilter.

Benchmark: 10,000 items (default --items) made of real sentences from shared/data/langid (75
languages, 15-45 words each), written as a JSONL file as users would export one. Documents: the
shared/data/neardup news articles (~690 words), repeated to --docs; every 10th has an item
pasted into it, so both sides must find exactly those. Both use 13-grams.

Peer: datatrove's NGramsDecontFilter (its own normalisation and word tokenizer), given an index of
the same items' 13-gram hashes built in its own way (`compute_hashes` of its indexer needs
lighteval; the hashes are computed here with the filter's tokenizer and hash function, which is
what the indexer does). Index build time is measured for ours only; memory is the resident-set
growth of building the index (ru_maxrss), and the index's own arrays.

Run: .venv/bin/python bench/decontaminate_speed.py [--items 10000] [--docs 2000]
No floor: prints figures and the ratio; exits 0.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from tokenmill.doc import Doc
from tokenmill.stages.decontaminate import DecontaminateConfig, DecontaminateStage
from tokenmill.stats import StageContext

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def make_items(n: int, seed: int = 0) -> list[str]:
    sentences = []
    for line in open(DATA / "langid" / "docs.jsonl", encoding="utf-8"):
        text = json.loads(line)["text"]
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 4]
    rng = random.Random(seed)
    items = []
    while len(items) < n:  # 15-45 words: a question with its context, as in MMLU or GSM8K
        k = rng.randint(2, 4)
        item = " ".join(rng.choice(sentences) for _ in range(k))
        if 15 <= len(item.split()) <= 45:
            items.append(item)
    return items


def make_docs(n: int, items: list[str], seed: int = 0) -> tuple[list[str], set[int]]:
    base = [json.loads(line)["text"] for line in open(DATA / "neardup" / "docs.jsonl", encoding="utf-8")]
    rng = random.Random(seed)
    docs, dirty = [], set()
    for i in range(n):
        text = base[i % len(base)]
        if i % 10 == 0:
            cut = text.find(". ", len(text) // 2) + 2
            text = text[:cut] + rng.choice(items) + " " + text[cut:]
            dirty.add(i)
        docs.append(text)
    return docs, dirty


def ours(bench_file: str, docs: list[str]) -> tuple[set[int], float, float, float, int]:
    before = rss_mb()
    stage = DecontaminateStage(DecontaminateConfig(benchmarks=(bench_file,)))
    t = time.perf_counter()
    stage.setup()
    build_s = time.perf_counter() - t
    grown = rss_mb() - before
    ctx = StageContext("decontaminate", keep_removed=True)
    t = time.perf_counter()
    kept = {int(d.id) for d in stage.run((Doc(id=str(i), text=x) for i, x in enumerate(docs)), ctx)}
    secs = time.perf_counter() - t
    return set(range(len(docs))) - kept, len(docs) / secs, build_s, grown, stage.index.nbytes


def datatrove_peer(items: list[str], docs: list[str]) -> tuple[set[int], float]:
    import xxhash
    from datatrove.data import Document
    from datatrove.pipeline.decont import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.pipeline.decont.n_grams import simplify_text
    from nltk import ngrams

    with tempfile.TemporaryDirectory() as tmp:
        flt = NGramsDecontFilter(tmp, config=NGramsDecontConfig(n_grams=13))
        try:
            flt.hash_func("a b")
        except TypeError:  # datatrove 0.10's xxhash64 wants bytes, its filter passes str
            flt.hash_func = lambda s: xxhash.xxh64_intdigest(s.encode())
        index = {}
        for item in items:
            tokens = flt.tokenizer.word_tokenize(simplify_text(item, flt.config.norm_config))
            for g in ngrams(tokens, 13):
                index[flt.hash_func(" ".join(g))] = "bench"
        flt._index_hashes = index
        t = time.perf_counter()
        dropped = {i for i, x in enumerate(docs) if flt.filter(Document(text=x, id=str(i))) is not True}
        return dropped, len(docs) / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--peer-docs", type=int, default=500, help="the peer is timed on this prefix")
    args = ap.parse_args()
    items = make_items(args.items)
    docs, dirty = make_docs(args.docs, items)
    words = sum(len(d.split()) for d in docs) / len(docs)
    with tempfile.TemporaryDirectory() as tmp:
        bench_file = f"{tmp}/bench-test.jsonl"
        with open(bench_file, "w", encoding="utf-8") as f:
            for q in items:
                f.write(json.dumps({"question": q}) + "\n")
        found, rate, build_s, grown, nbytes = ours(bench_file, docs)
    print(f"benchmark: {len(items):,} items ({sum(len(q.split()) for q in items) / len(items):.0f} words each); "
          f"documents: {len(docs):,} (~{words:.0f} words), {len(dirty)} with an item pasted in")
    print(f"tokenmill decontaminate: index built in {build_s:.2f} s, {nbytes / 1e6:.1f} MB of arrays, "
          f"resident memory +{grown:.0f} MB; {rate:,.0f} docs/s; found {len(found)} "
          f"({'exactly the pasted ones' if found == dirty else f'{len(found - dirty)} extra, {len(dirty - found)} missed'})")
    try:
        peer_found, peer_rate = datatrove_peer(items, docs[: args.peer_docs])
    except ImportError as e:
        print(f"datatrove NGramsDecontFilter: not available ({e})")
        return 0
    want = {i for i in dirty if i < args.peer_docs}
    print(f"datatrove NGramsDecontFilter: {peer_rate:,.0f} docs/s on the first {args.peer_docs}; found {len(peer_found)} "
          f"({'exactly the pasted ones' if peer_found == want else f'{len(peer_found - want)} extra, {len(want - peer_found)} missed'})")
    print(f"ratio: tokenmill {rate / peer_rate:.1f}x datatrove's docs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
