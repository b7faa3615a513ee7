"""`dedup.against` as the history grows: a new run deduplicated against earlier runs holding
--history signatures in all (1,000,000 by default), against the same run without `against`.

Earlier runs are made as the pipeline leaves them: generated documents (bench/dedup_scale.py's
corpus: 60 random words from a 5,000-word vocabulary), their signatures computed by the
signature task and persisted as RUN/dedup/signatures/part-*.parquet, with their band entries
beside them (part-*.bands, at the default operating point), which the new run reads.
--recomputed: also the same run with the band files hidden, so the earlier runs' band entries
are recomputed from their signatures (what every run did before they were persisted); the
dropped documents must be the same. The new run has --new-docs
documents, --copy-rate of them copies of earlier runs' documents (half exact, half one word
changed). Each task runs in a fresh spawned process (2 at a time), so its peak RSS is its own.

Run: .venv/bin/python bench/against_scale.py [--history 1000000] [--recomputed] (~3 min on 2 cores)
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
from tokenmill.stages.dedup.lsh import band_point, bands_url_of, persist_bands  # noqa: E402
from tokenmill.stages.dedup.minhash import MinHasher  # noqa: E402
from tokenmill.stages.dedup.signatures import read_signatures, sig_params, signatures_task  # noqa: E402


def earlier_part(docs_url: str, sig_url: str, hasher: MinHasher, point: dict):
    """One shard of an earlier run as its dedup step leaves it: signatures, and their band entries."""
    out = signatures_task(docs_url, sig_url, hasher)
    persist_bands(bands_url_of(sig_url), read_signatures(sig_url)[0], point, hasher.num_perm)
    return out


def earlier_runs(root: str, total: int, runs: int, shard_docs: int, procs: int) -> tuple[list[str], list[str]]:
    """`runs` run directories holding `total` persisted signatures; returns (run dirs, their input files)."""
    cfg = DedupConfig()
    bands, rows, num_perm = cfg.lsh()
    hasher = MinHasher(num_perm=num_perm, ngram=cfg.ngram, seed=cfg.seed)
    point = band_point(sig_params(hasher), bands, rows, cfg.exact)
    run_dirs, inputs_all, args = [], [], []
    for r in range(runs):
        run = f"{root}/earlier{r}"
        inputs, _ = make_corpus(f"{root}/gen{r}", total // runs, shard_docs, 0.0, seed=100 + r)
        for i, url in enumerate(inputs):
            args.append((url, storage.join(run, "dedup", "signatures", f"part-{i:05d}.parquet"), hasher, point))
        run_dirs.append(run)
        inputs_all.extend(inputs)
    SpawnRunner(procs)("signatures", earlier_part, args)
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
    t, c = time.perf_counter(), time.process_time()
    DedupStage(DedupConfig(against=against)).run_global(GlobalJob(inputs, f"{root}/{name}/work", f"{root}/{name}", runner))
    wall, driver_cpu = time.perf_counter() - t, time.process_time() - c
    dropped = set()
    for i in range(len(inputs)):
        dropped.update(pq.read_table(drop_list_url(f"{root}/{name}/work", i), columns=["id"]).column("id").to_pylist())
    steps = step_summary(runner.log)
    return {"wall_s": wall, "cpu_s": driver_cpu + sum(s["cpu_s"] for s in steps.values()), "dropped": dropped,
            "steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=1_000_000, help="signatures in the earlier runs, in all")
    ap.add_argument("--runs", type=int, default=4, help="earlier runs")
    ap.add_argument("--new-docs", type=int, default=100_000)
    ap.add_argument("--copy-rate", type=float, default=0.1)
    ap.add_argument("--shard-docs", type=int, default=50_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--recomputed", action="store_true",
                    help="also run with the band files hidden (band entries recomputed); same drops required")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        runs, earlier_inputs = earlier_runs(root, args.history, args.runs, args.shard_docs, args.procs)
        inputs, planted = new_run_inputs(root, args.new_docs, args.copy_rate, earlier_inputs)
        print(f"history: {args.runs} earlier runs, {args.history:,} signatures (made in {time.perf_counter() - t:.0f} s); "
              f"new run: {args.new_docs:,} documents, {len(planted):,} of them copies of earlier ones")
        results = {"without against": dedup(inputs, root, "plain", (), args.procs),
                   "against history": dedup(inputs, root, "against", tuple(runs), args.procs)}
        if args.recomputed:
            band_files = [f for r in runs for f in storage.glob(f"{r}/dedup/signatures/part-*.bands")]
            for f in band_files:
                os.rename(f, f + ".off")
            results["against history, band entries recomputed"] = dedup(inputs, root, "recomputed", tuple(runs), args.procs)
    for label, r in results.items():
        print(f"\n== {label}: wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s (driver + task processes), "
              f"{len(r['dropped']):,} dropped ==")
        print(f"{'step':28s} {'tasks':>5s} {'seconds':>8s} {'CPU s':>8s} {'peak MB/task':>12s}")
        for name, s in r["steps"].items():
            print(f"{name:28s} {s['tasks']:5d} {s['seconds']:8.1f} {s['cpu_s']:8.1f} {s['peak_mb']:12.0f}")
    plain, hist = results["without against"], results["against history"]
    found = len(hist["dropped"] & planted) / max(1, len(planted))
    extra = len(hist["dropped"] - planted - plain["dropped"])
    peaks = [max(s["peak_mb"] for s in r["steps"].values()) for r in (plain, hist)]
    ratio = peaks[1] / peaks[0]
    print(f"\ncopies of earlier documents dropped: {found:.3f} (floor >= 0.97); others dropped only with against: {extra}")
    print(f"largest task peak: {peaks[0]:.0f} MB without against, {peaks[1]:.0f} MB against {args.history:,} "
          f"signatures (ratio {ratio:.2f}, floor <= 1.5); wall {plain['wall_s']:.1f} s vs {hist['wall_s']:.1f} s, "
          f"CPU {plain['cpu_s']:.1f} s vs {hist['cpu_s']:.1f} s")
    ok = found >= 0.97 and extra == 0 and ratio <= 1.5
    if args.recomputed:
        rec = results["against history, band entries recomputed"]
        same = rec["dropped"] == hist["dropped"]
        print(f"band entries read vs recomputed: same dropped documents: {same} ({len(hist['dropped']):,} vs "
              f"{len(rec['dropped']):,}); wall {hist['wall_s']:.1f} s vs {rec['wall_s']:.1f} s, "
              f"CPU {hist['cpu_s']:.1f} s vs {rec['cpu_s']:.1f} s")
        ok = ok and same
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
