"""`dedup.against` as the history grows: a new run deduplicated against earlier runs holding
--history signatures in all (1,000,000 by default), against the same run without `against`.

Earlier runs are made as the pipeline leaves them: generated documents (bench/dedup_scale.py's
corpus: 60 random words from a 5,000-word vocabulary), their signatures computed by the
signature task and persisted as RUN/dedup/signatures/part-*.parquet. The new run has --new-docs
documents, --copy-rate of them copies of earlier runs' documents (half exact, half one word
changed). Each task runs in a fresh spawned process (2 at a time), so its peak RSS is its own.

Run: .venv/bin/python bench/against_scale.py [--history 1000000] (~4 min on 2 cores)
Checks: every planted copy of an earlier document is dropped (>= 0.97, nothing else), and the
largest task's peak memory with `against` is at most 1.5x the largest without it: no step
loads every earlier signature into one process (bands and pairs work per source file and per
hash partition; partitions grow with the number of band entries).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dedup_scale import VOCAB, SpawnRunner, make_corpus, step_summary  # noqa: E402

from tokenmill import storage  # noqa: E402
from tokenmill.stages.base import GlobalJob  # noqa: E402
from tokenmill.stages.dedup import DedupConfig, DedupStage, drop_list_url  # noqa: E402
from tokenmill.stages.dedup.minhash import MinHasher  # noqa: E402
from tokenmill.stages.dedup.signatures import signatures_task  # noqa: E402


def earlier_runs(root: str, total: int, runs: int, shard_docs: int, procs: int) -> tuple[list[str], list[str]]:
    """`runs` run directories holding `total` persisted signatures; returns (run dirs, their input files)."""
    cfg = DedupConfig()
    bands, rows, num_perm = cfg.lsh()
    hasher = MinHasher(num_perm=num_perm, ngram=cfg.ngram, seed=cfg.seed)
    run_dirs, inputs_all, args = [], [], []
    for r in range(runs):
        run = f"{root}/earlier{r}"
        inputs, _ = make_corpus(f"{root}/gen{r}", total // runs, shard_docs, 0.0, seed=100 + r)
        for i, url in enumerate(inputs):
            args.append((url, storage.join(run, "dedup", "signatures", f"part-{i:05d}.parquet"), hasher))
        run_dirs.append(run)
        inputs_all.extend(inputs)
    SpawnRunner(procs)("signatures", signatures_task, args)
    return run_dirs, inputs_all


def new_run_inputs(root: str, n: int, copy_rate: float, earlier_inputs: list[str], seed: int = 7) -> tuple[list[str], set]:
    """New documents, `copy_rate` of them copies of earlier documents (half with one word changed)."""
    rng = np.random.default_rng(seed)
    inputs, _ = make_corpus(f"{root}/new", n, n, 0.0, seed=seed)
    table = pq.read_table(inputs[0])
    texts = table.column("text").to_pylist()
    planted = set()
    pick = np.flatnonzero(rng.random(n) < copy_rate)
    donors = pq.read_table(earlier_inputs[0], columns=["text"]).column("text").to_pylist()
    for k, i in enumerate(pick):
        words = donors[k % len(donors)].split()
        if k % 2:
            words[30] = VOCAB[(int(words[30][3:]) + 1) % len(VOCAB)]
        texts[i] = " ".join(words)
        planted.add(f"d{i}")
    pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts)), inputs[0])
    return inputs, planted


def dedup(inputs: list[str], root: str, name: str, against: tuple[str, ...], procs: int) -> dict:
    runner = SpawnRunner(procs)
    t = time.perf_counter()
    DedupStage(DedupConfig(against=against)).run_global(GlobalJob(inputs, f"{root}/{name}/work", f"{root}/{name}", runner))
    wall = time.perf_counter() - t
    dropped = set()
    for i in range(len(inputs)):
        dropped.update(pq.read_table(drop_list_url(f"{root}/{name}/work", i), columns=["id"]).column("id").to_pylist())
    return {"wall_s": wall, "dropped": dropped, "steps": step_summary(runner.log)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=1_000_000, help="signatures in the earlier runs, in all")
    ap.add_argument("--runs", type=int, default=4, help="earlier runs")
    ap.add_argument("--new-docs", type=int, default=100_000)
    ap.add_argument("--copy-rate", type=float, default=0.1)
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        runs, earlier_inputs = earlier_runs(root, args.history, args.runs, args.shard_docs, args.procs)
        inputs, planted = new_run_inputs(root, args.new_docs, args.copy_rate, earlier_inputs)
        print(f"history: {args.runs} earlier runs, {args.history:,} signatures (made in {time.perf_counter() - t:.0f} s); "
              f"new run: {args.new_docs:,} documents, {len(planted):,} of them copies of earlier ones")
        results = {"without against": dedup(inputs, root, "plain", (), args.procs),
                   "against history": dedup(inputs, root, "against", tuple(runs), args.procs)}
    for label, r in results.items():
        print(f"\n== {label}: wall {r['wall_s']:.1f} s, {len(r['dropped']):,} dropped ==")
        print(f"{'step':28s} {'tasks':>5s} {'seconds':>8s} {'peak MB/task':>12s}")
        for name, s in r["steps"].items():
            print(f"{name:28s} {s['tasks']:5d} {s['seconds']:8.1f} {s['peak_mb']:12.0f}")
    plain, hist = results["without against"], results["against history"]
    found = len(hist["dropped"] & planted) / max(1, len(planted))
    extra = len(hist["dropped"] - planted - plain["dropped"])
    peaks = [max(s["peak_mb"] for s in r["steps"].values()) for r in (plain, hist)]
    ratio = peaks[1] / peaks[0]
    print(f"\ncopies of earlier documents dropped: {found:.3f} (floor >= 0.97); others dropped only with against: {extra}")
    print(f"largest task peak: {peaks[0]:.0f} MB without against, {peaks[1]:.0f} MB against {args.history:,} "
          f"signatures (ratio {ratio:.2f}, floor <= 1.5); wall {plain['wall_s']:.1f} s vs {hist['wall_s']:.1f} s")
    ok = found >= 0.97 and extra == 0 and ratio <= 1.5
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
