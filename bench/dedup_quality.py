"""Dedup quality on shared/data/neardup: tokenmill's DedupStage beside datasketch's MinHashLSH.

Ground truth: pairs.jsonl (brute-force word-5-gram Jaccard). Required removals: in each
connected component of the Jaccard >= 0.8 graph, all but one document. Recall = required
removals made / required; precision = removed documents that have a kept document with
Jaccard >= 0.5 / removed.

Peers (datasketch, signatures with `MinHash.bulk`, the same word 5-gram shingles):
- at tokenmill's operating point: `MinHashLSH(num_perm=100, params=(20, 5))`, candidate
  pairs kept when `MinHash.jaccard` >= 0.7 (tokenmill's verify), then tokenmill's resolution
  (connected components, the first document of each kept); and `params=(14, 8)`, no verify,
  beside tokenmill's FineWeb setting;
- as datasketch's docs use it: `MinHashLSH(threshold=0.8, num_perm=112)`, which picks 9 bands
  x 12 rows (candidate probability ~0.47 at Jaccard 0.8), insert in order, drop a document
  whose query hits a kept one.
Every side runs on every seed (MinHash seeds 1..N); min/mean/max are printed.

Run: .venv/bin/python bench/dedup_quality.py [--data ../shared/data/neardup] [--seeds 8]
Floors (tokenmill defaults, on every seed): recall >= 0.97, precision >= 0.99; else exit 1.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from tokenmill import storage
from tokenmill.doc import Doc
from tokenmill.stages.base import GlobalJob, StageContext
from tokenmill.stages.dedup import DedupConfig, DedupStage


def load(data: Path):
    docs = [json.loads(line) for line in open(data / "docs.jsonl")]
    jac = {}
    for line in open(data / "pairs.jsonl"):
        q = json.loads(line)
        jac[(q["a"], q["b"])] = jac[(q["b"], q["a"])] = q["jaccard"]
    return docs, jac


def score(ids: list[str], jac: dict, removed: set[str]) -> tuple[float, float]:
    parent = {i: i for i in ids}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (a, b), j in jac.items():
        if j >= 0.8:
            parent[find(a)] = find(b)
    comp = {i: find(i) for i in ids}
    size = collections.Counter(comp.values())
    need = sum(n - 1 for n in size.values())
    got = collections.Counter(comp[i] for i in removed)
    recall = sum(min(n, size[c] - 1) for c, n in got.items()) / need
    kept = [i for i in ids if i not in removed]
    ok = sum(any(jac.get((r, k), 0.0) >= 0.5 for k in kept) for r in removed)
    return recall, (ok / len(removed) if removed else 1.0)


def run_tokenmill(docs, config: DedupConfig, shards: int = 4) -> set[str]:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for s in range(shards):
            url = f"{tmp}/in/{s:05d}.parquet"
            storage.write_docs(url, [Doc(id=d["id"], text=d["text"]) for d in docs[s::shards]])
            inputs.append(url)
        stage = DedupStage(config)
        stage.run_global(GlobalJob(inputs, f"{tmp}/work", f"{tmp}/run", lambda n, fn, args: [fn(*a) for a in args]))
        ctx, removed = StageContext("dedup"), set()
        for s, url in enumerate(inputs):
            stage.begin_shard(s, f"{tmp}/work")
            for d in storage.read_docs(url):
                if stage.process(d, ctx) is None:
                    removed.add(d.id)
        return removed


def _datasketch_signatures(docs, num_perm: int, seed: int):
    from datasketch import MinHash

    sh = [[" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))]
          for w in (re.findall(r"\w+", d["text"].lower()) for d in docs)]
    return MinHash.bulk(sh, num_perm=num_perm, seed=seed)


def run_datasketch(docs, seed: int, threshold=0.8, num_perm=112) -> set[str]:
    """datasketch's documented use: MinHashLSH(threshold, num_perm) picks bands x rows; a document
    whose query hits a kept one is removed, else inserted."""
    from datasketch import MinHashLSH

    lsh, removed = MinHashLSH(threshold=threshold, num_perm=num_perm), set()
    for d, m in zip(docs, _datasketch_signatures(docs, num_perm, seed)):
        if lsh.query(m):
            removed.add(d["id"])
        else:
            lsh.insert(d["id"], m)
    return removed


def run_datasketch_same_point(docs, seed: int, bands=20, rows=5, verify=0.7) -> set[str]:
    """tokenmill's operating point on datasketch: MinHashLSH(params=(bands, rows)), each candidate
    pair kept if its estimated Jaccard (MinHash.jaccard) >= verify, then tokenmill's resolution:
    connected components of the kept pairs, the first document (input order) of each kept."""
    from datasketch import MinHashLSH

    num_perm = bands * rows
    sigs = _datasketch_signatures(docs, num_perm, seed)
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    for d, m in zip(docs, sigs):
        lsh.insert(d["id"], m)
    pos = {d["id"]: i for i, d in enumerate(docs)}
    parent = list(range(len(docs)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(sigs):
        for key in lsh.query(m):
            j = pos[key]
            if j != i and (verify is None or m.jaccard(sigs[j]) >= verify):
                a, b = find(i), find(j)
                parent[max(a, b)] = min(a, b)  # the root is the component's first document
    return {d["id"] for i, d in enumerate(docs) if find(i) != i}


FLOOR_RECALL, FLOOR_PRECISION = 0.97, 0.99


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "neardup"))
    ap.add_argument("--seeds", type=int, default=8, help="run seeds 1..N on every side; floors hold on each")
    args = ap.parse_args()
    docs, jac = load(Path(args.data))
    ids = [d["id"] for d in docs]
    seeds = range(1, args.seeds + 1)
    methods = [
        ("tokenmill defaults (20x5=100, verify 0.7)", lambda s: run_tokenmill(docs, DedupConfig(seed=s))),
        ("datasketch params=(20,5), verify 0.7", lambda s: run_datasketch_same_point(docs, s)),
        ("tokenmill 14x8=112, verify 0.7", lambda s: run_tokenmill(docs, DedupConfig(bands=14, rows=8, seed=s))),
        ("tokenmill 14x8=112, no verify (FineWeb)",
         lambda s: run_tokenmill(docs, DedupConfig(bands=14, rows=8, verify=None, seed=s))),
        ("datasketch params=(14,8), no verify", lambda s: run_datasketch_same_point(docs, s, 14, 8, None)),
        ("datasketch MinHashLSH(threshold=0.8, 112)", lambda s: run_datasketch(docs, s)),
    ]
    results = {}
    for s in seeds:  # alternate which side goes first, as in the other benches
        for name, fn in (methods if s % 2 else methods[::-1]):
            t = time.perf_counter()
            removed = fn(s)
            results[name, s] = (*score(ids, jac, removed), len(removed), time.perf_counter() - t)
    print(f"{len(docs)} documents, {sum(j >= 0.8 for j in jac.values()) // 2} pairs with Jaccard >= 0.8; "
          f"seeds {seeds.start}..{seeds.stop - 1}, every side on every seed")
    print(f"{'method':44s} {'recall min/mean/max':>21s} {'precision min/mean':>19s} {'removed':>9s} {'s/run':>6s}")
    for name, _ in methods:
        rows = [results[name, s] for s in seeds]
        rec, prec, n, sec = zip(*rows)
        print(f"{name:44s} {min(rec):.3f}/{sum(rec) / len(rec):.3f}/{max(rec):.3f} "
              f"{min(prec):9.3f}/{sum(prec) / len(prec):.3f} {min(n):4d}-{max(n):<4d} {sum(sec) / len(sec):6.2f}")
    worst = [results[methods[0][0], s] for s in seeds]
    bad = [s for s, (r, p, _, _) in zip(seeds, worst) if r < FLOOR_RECALL or p < FLOOR_PRECISION]
    ok = not bad
    print(f"floors (tokenmill defaults, every seed: recall >= {FLOOR_RECALL}, precision >= {FLOOR_PRECISION}):",
          "PASS" if ok else f"FAIL on seeds {bad}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
