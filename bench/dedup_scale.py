"""Dedup at scale on this machine: docs/s and peak memory, and the same work beside datasketch.

1. Same documents, same cores, same permutations (the comparison): --peer-docs documents in
   Parquet files, read by both sides; tokenmill's DedupStage (defaults: 20 x 5 = 100
   permutations, verify 0.7) with every step in one process, and datasketch at the same
   operating point in one process (MinHash.bulk with xxh32, MinHashLSH(num_perm=100,
   params=(20, 5)), a candidate counts if its estimated Jaccard >= 0.7, query then insert).
   Each measurement in a fresh spawned process, order alternating over --rounds; docs per CPU-s (and wall docs/s) per
   round, peak memory, planted duplicates found. Run on two corpora: `generated` (60 random
   words from a 5,000-word vocabulary) and `real` (the 1,986 real documents of shared/data,
   langid samples and news articles, repeated with every third word replaced, so copies of one
   real document share almost no 5-gram). Both get --dup-rate planted copies of an earlier
   document, half exact, half with one word changed.
2. Scale (tokenmill only): DedupStage.run_global with defaults and partitions on auto at each
   of --sizes, every task in a fresh spawned process (--procs at a time), so ru_maxrss is that
   task's own peak. datasketch keeps its whole index in one process's memory, so it has no
   per-task figure to set beside these.

Run: .venv/bin/python bench/dedup_scale.py [--sizes 250000 1000000] [--peer-docs 20000] [--text generated|real]
     [--compare-only] [--rounds 2]
Checks: both sizes finish, planted duplicates found >= 0.97, nothing else dropped, max task
peak at the large size <= 1.5x the small size's. (The comparison has no floor: it is reported.)
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill import storage
from tokenmill.stages.base import GlobalJob
from tokenmill.stages.dedup import DedupConfig, DedupStage, drop_list_url

VOCAB = np.array([f"tok{i}" for i in range(5000)])
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_base() -> list[list[str]]:
    """The words of the real documents in shared/data: 1,825 langid samples (75 languages, 8
    sentences) and 161 news articles (~700 words), one list of whitespace words each."""
    out = []
    for name in ("langid/docs.jsonl", "neardup/docs.jsonl"):
        with open(DATA / name) as f:
            out += [json.loads(line)["text"].split() for line in f if line.strip()]
    return [w for w in out if len(w) >= 10]


def _real_texts(ids: np.ndarray, base: list[list[str]], seed: int) -> list[str]:
    """Document i: real document i % len(base) with every third word replaced by a word drawn by
    (seed, i), so two documents made from the same real one share almost no 5-gram."""
    out = []
    for i in ids.tolist():
        words = list(base[i % len(base)])
        rng = np.random.default_rng((seed, i))
        pos = np.arange(rng.integers(0, 3), len(words), 3)
        for p, v in zip(pos.tolist(), rng.integers(0, len(VOCAB), pos.size).tolist()):
            words[p] = str(VOCAB[v])
        out.append(" ".join(words))
    return out


def make_corpus(root: str, n_docs: int, shard_docs: int, dup_rate: float, seed: int = 0,
                text: str = "generated") -> tuple[list[str], set]:
    """`generated`: 60 random words from a 5,000-word vocabulary; `real`: the shared real
    documents, repeated with edits (`_real_texts`). Then --dup-rate planted copies of an earlier
    document, half exact, half with one word changed."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, len(VOCAB), size=(n_docs, 60))
    is_dup = rng.random(n_docs) < dup_rate
    is_dup[0] = False
    dup, originals = np.flatnonzero(is_dup), np.flatnonzero(~is_dup)
    src = originals[rng.integers(0, np.searchsorted(originals, dup))]
    source = np.arange(n_docs)
    source[dup] = src  # a copy of some earlier original document...
    edited = np.zeros(n_docs, bool)
    edited[dup[rng.random(dup.size) < 0.5]] = True  # ...half of them with one word changed
    words[dup] = words[src]
    words[edited, 30] = (words[edited, 30] + 1) % len(VOCAB)
    base = real_base() if text == "real" else None
    inputs = []
    for s, lo in enumerate(range(0, n_docs, shard_docs)):
        if base is None:
            texts = [" ".join(row) for row in VOCAB[words[lo : lo + shard_docs]]]
        else:
            texts = _real_texts(source[lo : lo + shard_docs], base, seed)
            for k in np.flatnonzero(edited[lo : lo + shard_docs]).tolist():
                w = texts[k].split()
                w[len(w) // 2] = "edited" + w[len(w) // 2]
                texts[k] = " ".join(w)
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


def step_summary(log: list) -> dict:
    """Per dedup step of a SpawnRunner's log: tasks, seconds, CPU seconds of its processes and
    the largest task's peak MB."""
    steps = collections.OrderedDict()
    for name, sec, out, *cpu in log:
        s = steps.setdefault(name, {"tasks": 0, "seconds": 0.0, "cpu_s": 0.0, "peak_mb": 0.0})
        s["tasks"] += len(out)
        s["seconds"] += sec
        s["cpu_s"] += cpu[0] if cpu else 0.0
        s["peak_mb"] = max([s["peak_mb"]] + [r.value["peak_mb"] for r in out if isinstance(r.value, dict)])
    return steps


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class SpawnRunner:
    """Each task in a fresh spawned process (maxtasksperchild=1), `procs` at a time. Logs per
    step: (name, wall seconds, results, CPU seconds of its processes, start-up included)."""

    def __init__(self, procs: int):
        self.ctx = mp.get_context("spawn")
        self.procs = procs
        self.log: list[tuple[str, float, list]] = []

    def __call__(self, name, fn, args):
        t, c = time.perf_counter(), children_cpu()
        with self.ctx.Pool(self.procs, maxtasksperchild=1) as pool:
            out = pool.starmap(fn, args, chunksize=1)
            pool.close()
            pool.join()
        self.log.append((name, time.perf_counter() - t, out, children_cpu() - c))
        return out


def run(n_docs: int, shard_docs: int, dup_rate: float, procs: int, text: str = "generated") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        inputs, planted = make_corpus(tmp, n_docs, shard_docs, dup_rate, text=text)
        gen = time.perf_counter() - t
        runner = SpawnRunner(procs)
        stage = DedupStage(DedupConfig())
        t = time.perf_counter()
        stage.run_global(GlobalJob(inputs, f"{tmp}/work", f"{tmp}/run", runner))
        wall = time.perf_counter() - t
        dropped = set()
        for i in range(len(inputs)):
            dropped.update(pq.read_table(drop_list_url(f"{tmp}/work", i), columns=["id"]).column("id").to_pylist())
        return {"docs": n_docs, "shards": len(inputs), "gen_s": gen, "wall_s": wall, "planted": len(planted),
                "dropped": len(dropped), "found": len(dropped & planted), "steps": step_summary(runner.log)}


def tokenmill_task(urls: list[str]) -> tuple[float, float, float, set]:
    """DedupStage (defaults: 20 x 5 = 100 permutations, verify 0.7) on these files, every step in
    this one process: (seconds, CPU seconds, peak MB, dropped ids)."""
    from tokenmill.stages.dedup.files import peak_rss_mb

    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        DedupStage(DedupConfig()).run_global(
            GlobalJob(urls, f"{tmp}/work", f"{tmp}/run", lambda n, fn, args: [fn(*a) for a in args]))
        sec, cpu = time.perf_counter() - t, time.process_time() - c
        dropped = set()
        for i in range(len(urls)):
            dropped.update(pq.read_table(drop_list_url(f"{tmp}/work", i), columns=["id"]).column("id").to_pylist())
    return sec, cpu, peak_rss_mb(), dropped


def peer_task(urls: list[str]) -> tuple[float, float, float, set]:
    """datasketch at tokenmill's operating point on the same files, in one process: MinHash.bulk
    (xxh32, its fastest documented hashing) over the same word 5-grams, MinHashLSH(num_perm=100,
    params=(20, 5)), query then insert; a document whose candidates include a kept one with
    estimated Jaccard >= 0.7 is dropped. (seconds, CPU seconds, peak MB, dropped ids)."""
    import re

    import xxhash
    from datasketch import MinHash, MinHashLSH

    from tokenmill.stages.dedup.files import peak_rss_mb

    t, c = time.perf_counter(), time.process_time()
    lsh, kept, dropped = MinHashLSH(num_perm=100, params=(20, 5)), {}, set()
    for url in urls:
        table = pq.read_table(url, columns=["id", "text"])
        ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
        sh = [[" ".join(w[j : j + 5]).encode() for j in range(max(1, len(w) - 4))]
              for w in (re.findall(r"\w+", x.lower()) for x in texts)]
        for i, m in zip(ids, MinHash.bulk(sh, num_perm=100, hashfunc=xxhash.xxh32_intdigest)):
            if any(m.jaccard(kept[k]) >= 0.7 for k in lsh.query(m)):
                dropped.add(i)
            else:
                lsh.insert(i, m)
                kept[i] = m
    return time.perf_counter() - t, time.process_time() - c, peak_rss_mb(), dropped


def compare(n_docs: int, shard_docs: int, dup_rate: float, text: str, rounds: int) -> None:
    """Both sides on the same files, one process each (a fresh spawned one per measurement),
    order alternating; docs per CPU second (the process's user + system time, so other jobs on
    the machine count less than in wall time) and docs/s of wall time per round, and the planted
    duplicates each found."""
    with tempfile.TemporaryDirectory() as tmp:
        urls, planted = make_corpus(tmp, n_docs, shard_docs, dup_rate, text=text)
        sides = {"tokenmill DedupStage": tokenmill_task, "datasketch MinHashLSH": peer_task}
        rate = {k: [] for k in sides}
        wall = {k: [] for k in sides}
        found = {}
        ctx = mp.get_context("spawn")
        for r in range(rounds):
            for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                with ctx.Pool(1, maxtasksperchild=1) as pool:
                    out = pool.apply(sides[name], (urls,))
                wall[name].append(n_docs / out[0])
                rate[name].append(n_docs / out[1])
                found[name] = (len(out[-1] & planted), len(out[-1] - planted), out[2])
        words = sum(len(x.split()) for x in pq.read_table(urls[0], columns=["text"]).column("text").to_pylist())
        print(f"\n== same documents, one process each: {n_docs:,} {text} docs (~{words / min(n_docs, shard_docs):.0f} "
              f"words), 100 permutations (20 x 5), verify 0.7, {rounds} rounds alternating ==")
        ratios = [a / b for a, b in zip(rate["tokenmill DedupStage"], rate["datasketch MinHashLSH"])]
        for name in sides:
            print(f"{name:24s} {statistics.median(rate[name]):8,.0f} docs/CPU-s (rounds "
                  f"{', '.join(f'{x:,.0f}' for x in rate[name])}; wall docs/s median "
                  f"{statistics.median(wall[name]):,.0f}); planted found {found[name][0]:,}/{len(planted):,}, "
                  f"others dropped {found[name][1]:,}, peak {found[name][2]:.0f} MB")
        print(f"ratio tokenmill / datasketch, per CPU second: {statistics.median(ratios):.1f}x "
              f"(rounds {min(ratios):.1f}-{max(ratios):.1f})")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--peer-docs", type=int, default=20_000, help="documents of the same-work comparison (0: skip)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--text", choices=("generated", "real"), default="generated", help="corpus of the scale runs")
    ap.add_argument("--compare-only", action="store_true", help="only the same-work comparison (no scale runs, no checks)")
    args = ap.parse_args()
    if args.peer_docs:
        for text in ("generated", "real"):
            compare(args.peer_docs, min(args.shard_docs, args.peer_docs // 2), args.dup_rate, text, args.rounds)
    if args.compare_only:
        return 0
    results = []
    for n in args.sizes:
        r = run(n, args.shard_docs, args.dup_rate, args.procs, args.text)
        results.append(r)
        print(f"\n== scale: {n:,} {args.text} docs, {r['shards']} shards (made in {r['gen_s']:.0f} s) ==")
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
    ok = ratio <= 1.5 and found >= 0.97 and wrong == 0 and max(args.sizes) >= 1_000_000
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
