"""Dedup at scale on this machine: docs/s and peak memory per task at two corpus sizes.

A generated corpus of short documents (60 random words from a 5,000-word vocabulary, so
unrelated documents share no 5-gram) in shards of --shard-docs; --dup-rate of them are planted
copies of an earlier document (half exact, half with one word changed: Jaccard ~0.84). Runs
DedupStage.run_global with default settings and partitions on auto (they grow with the corpus),
every task in a fresh spawned process (2 at a time), so ru_maxrss is that task's own peak.
Peer, same run, same documents: datasketch MinHashLSH (14 bands x 8 rows, MinHash.update per
shingle, query-then-insert, one process) on the first --peer-docs and half as many documents:
its docs/s and its peak memory, which grows with the corpus (the whole index is in memory).

Run: .venv/bin/python bench/dedup_scale.py [--sizes 250000 1000000] (~6 min on 2 cores)
Checks: both sizes finish, planted duplicates found >= 0.97, max task peak at the large size
<= 1.5x the small size's.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.stages.base import GlobalJob
from tokenmill.stages.dedup import DedupConfig, DedupStage, drop_list_url

VOCAB = np.array([f"tok{i}" for i in range(5000)])


def make_corpus(root: str, n_docs: int, shard_docs: int, dup_rate: float, seed: int = 0) -> tuple[list[str], set]:
    rng = np.random.default_rng(seed)
    words = rng.integers(0, len(VOCAB), size=(n_docs, 60))
    is_dup = rng.random(n_docs) < dup_rate
    is_dup[0] = False
    dup, originals = np.flatnonzero(is_dup), np.flatnonzero(~is_dup)
    src = originals[rng.integers(0, np.searchsorted(originals, dup))]
    words[dup] = words[src]  # a copy of some earlier original document...
    edited = dup[rng.random(dup.size) < 0.5]
    words[edited, 30] = (words[edited, 30] + 1) % len(VOCAB)  # ...half of them with one word changed
    inputs = []
    for s, lo in enumerate(range(0, n_docs, shard_docs)):
        block = words[lo : lo + shard_docs]
        texts = [" ".join(row) for row in VOCAB[block]]
        n = len(texts)
        cols = {f.name: pa.nulls(n, f.type) for f in storage.DOC_SCHEMA}
        cols["id"] = pa.array([f"d{lo + i}" for i in range(n)])
        cols["text"] = pa.array(texts)
        cols["warc_date"] = pa.array(["2024-05-01T00:00:00Z"] * n)
        url = f"{root}/in/{s:05d}.parquet"
        storage.makedirs(f"{root}/in")
        pq.write_table(pa.table(cols, schema=storage.DOC_SCHEMA), url)
        inputs.append(url)
    return inputs, {f"d{i}" for i in dup}


class SpawnRunner:
    """Each task in a fresh spawned process (maxtasksperchild=1), `procs` at a time."""

    def __init__(self, procs: int):
        self.ctx = mp.get_context("spawn")
        self.procs = procs
        self.log: list[tuple[str, float, list]] = []

    def __call__(self, name, fn, args):
        t = time.perf_counter()
        with self.ctx.Pool(self.procs, maxtasksperchild=1) as pool:
            out = pool.starmap(fn, args, chunksize=1)
        self.log.append((name, time.perf_counter() - t, out))
        return out


def run(n_docs: int, shard_docs: int, dup_rate: float, procs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        inputs, planted = make_corpus(tmp, n_docs, shard_docs, dup_rate)
        gen = time.perf_counter() - t
        runner = SpawnRunner(procs)
        stage = DedupStage(DedupConfig())
        t = time.perf_counter()
        stage.run_global(GlobalJob(inputs, f"{tmp}/work", f"{tmp}/run", runner))
        wall = time.perf_counter() - t
        dropped = set()
        for i in range(len(inputs)):
            dropped.update(pq.read_table(drop_list_url(f"{tmp}/work", i), columns=["id"]).column("id").to_pylist())
        steps = collections.OrderedDict()
        for name, sec, out in runner.log:
            s = steps.setdefault(name, {"tasks": 0, "seconds": 0.0, "peak_mb": 0.0})
            s["tasks"] += len(out)
            s["seconds"] += sec
            s["peak_mb"] = max([s["peak_mb"]] + [r.value["peak_mb"] for r in out if isinstance(r.value, dict)])
        return {"docs": n_docs, "shards": len(inputs), "gen_s": gen, "wall_s": wall, "planted": len(planted),
                "dropped": len(dropped), "found": len(dropped & planted), "steps": steps}


def peer_task(url: str, n_docs: int) -> tuple[float, float, int]:
    """datasketch on the first n_docs of one Parquet file: (docs/s, peak MB, duplicates found)."""
    import re

    from datasketch import MinHash, MinHashLSH

    from tokenmill.stages.dedup.files import peak_rss_mb

    texts = pq.read_table(url, columns=["text"]).column("text").to_pylist()[:n_docs]
    t = time.perf_counter()
    lsh, found = MinHashLSH(num_perm=112, params=(14, 8)), 0
    for i, text in enumerate(texts):
        words = re.findall(r"\w+", text.lower())
        m = MinHash(num_perm=112)
        for j in range(max(1, len(words) - 4)):
            m.update(" ".join(words[j : j + 5]).encode())
        if lsh.query(m):
            found += 1
        else:
            lsh.insert(i, m)
    return n_docs / (time.perf_counter() - t), peak_rss_mb(), found


def run_peer(n_docs: int) -> list[tuple[int, float, float, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        (url,), _ = make_corpus(tmp, n_docs, n_docs, 0.1)
        with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            return [(n, *pool.apply(peer_task, (url, n))) for n in (n_docs // 2, n_docs)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--peer-docs", type=int, default=40_000)
    args = ap.parse_args()
    results = []
    for n in args.sizes:
        r = run(n, args.shard_docs, args.dup_rate, args.procs)
        results.append(r)
        print(f"\n== {n:,} docs, {r['shards']} shards (generated in {r['gen_s']:.0f} s) ==")
        print(f"dedup wall {r['wall_s']:.1f} s: {n / r['wall_s']:,.0f} docs/s on {args.procs} processes")
        print(f"planted duplicates {r['planted']:,}, dropped {r['dropped']:,}, of them planted {r['found']:,}")
        print(f"{'step':26s} {'tasks':>5s} {'seconds':>8s} {'peak MB/task':>12s}")
        for name, s in r["steps"].items():
            print(f"{name:26s} {s['tasks']:5d} {s['seconds']:8.1f} {s['peak_mb']:12.0f}")
    peaks = [max(s["peak_mb"] for s in r["steps"].values()) for r in results]
    found = min(r["found"] / max(r["planted"], 1) for r in results)
    wrong = sum(r["dropped"] - r["found"] for r in results)
    ratio = peaks[-1] / peaks[0]
    print(f"\nmax peak MB per task by size: {', '.join(f'{p:.0f}' for p in peaks)} (ratio {ratio:.2f}, floor <= 1.5)")
    print(f"planted duplicates found (min over sizes): {found:.3f} (floor >= 0.97); unplanted dropped: {wrong}")
    if args.peer_docs:
        for n, rate, peak, found in run_peer(args.peer_docs):
            print(f"peer datasketch MinHashLSH 14x8, {n:,} docs, 1 process: {rate:,.0f} docs/s, "
                  f"peak {peak:.0f} MB, {found:,} duplicates found")
    ok = ratio <= 1.5 and found >= 0.97 and wrong == 0 and max(args.sizes) >= 1_000_000
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
