"""Tokenize-stage throughput beside raw `Tokenizer.encode_batch`, same text, same tokenizer, same run.

Text: the real documents in shared/data (langid: 75 languages; neardup: news articles), each
once by default (`--repeat N` makes N copies under distinct ids: repeated text favours a
word cache, so the headline runs on text without repeats). A byte-level BPE (`--vocab`) is trained on them first
(timed, reported, not counted); then
  - peer: `encode_batch(all texts)` in one call (ids only, nothing written) with the same
    BPE word cache the stage uses (`tokenize.word_cache`, 200,000 words), the headline;
    `encode_batch_fast` (no character offsets, no special tokens: the call the stage makes) with
    that cache beside it, and raw `encode_batch` with tokenizers' default cache (10,000), and
  - ours: TokenizeStage with that tokenizer.json, from its config (whose check loads the
    tokenizer) through run_global: read the Parquet documents, encode in batches, write
    scratch, shuffle into shards, sha256, manifest (an in-process runner, so both use the same
    cores through the tokenizer's own threads; `--executor ray`: tasks on a local Ray whose
    workers are already up, as after the earlier stages of a run, each worker loading the
    tokenizer itself).
Each measurement runs in a fresh Python process, as a new worker would: a cold BPE word cache,
and no state left by earlier rounds (tokenizers does not give back the memory of a dropped
Tokenizer: reloading it in one process grows it ~170 MB a round and slows later rounds). Every
process does the same things before its clock starts: imports, one small Parquet write and read
(pyarrow imports pandas on its first conversion, 0.3-0.7 s here: a pipeline process has done that
in its earlier stages, and the peer's own read of its texts does it), and one encode_batch with a
throwaway tokenizer, which starts tokenizers' thread pool without touching the measured
tokenizer's word cache. Interpreter start-up is in neither clock. Every process gets the same
threads: RAYON_NUM_THREADS=`--threads` (default: this machine's CPUs) and
TOKENIZERS_PARALLELISM=true. Every side's clock starts before it loads tokenizer.json (the stage
cannot encode without loading it, nor can a raw encode_batch); the peer's encode_batch call alone
is printed beside it (`encode only`), the ratio a skeptic may prefer. The peer's texts are read
from Parquet before its clock starts, the stage's inside its clock. All
run `--rounds` times, back to back in each round, the order reversed every round: this machine's
speed drifts by +-30% over seconds (shared host), and a fixed order favours one side. The verdict
is the median over rounds of the per-round ratio (each pair saw the same machine); best-of-each
and the ratio of CPU seconds are printed beside it. Prints MB/s of UTF-8 text for each and the
ratios; exits 1 when ours < 0.9 x the same-cache peer. `--instructions` also counts each side's
instructions under valgrind's callgrind, which the machine's load does not change (see
count_instructions).
The stage has fixed costs (loading the tokenizer, ~0.1 CPU-s; writing tokenizer.json, the scratch
parts, the shards and the manifest, each file fsynced, ~8 ms apiece on this disk), which weigh on
the 2.9 MB of distinct text the shared data holds (one WARC of Common Crawl gives on the order of
100 MB of extracted text). Figures: BENCHMARKS.md.

    .venv/bin/python bench/tokenize_speed.py [--repeat 1] [--vocab 32768] [--parts 4] [--rounds 7]
                                             [--executor threads|ray] [--threads N] [--instructions]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
FLOOR = 0.9


def load_texts(data: Path) -> list[str]:
    texts = []
    for name in ("langid/docs.jsonl", "neardup/docs.jsonl"):
        with open(data / name) as f:
            texts += [json.loads(line)["text"] for line in f if line.strip()]
    return [t for t in texts if t]


def _warm():
    """A task that imports what the encode tasks import, as earlier pipeline stages would have."""
    import time

    import tokenmill.stages.tokenize.tasks  # noqa: F401
    from tokenmill.stages.base import TaskResult

    time.sleep(0.2)
    return TaskResult()


def _process_warmup() -> None:
    """What every measured process does before its clock starts (see the module docstring)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, models

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["warm-up"]}), buf)
    pq.read_table(io.BytesIO(buf.getvalue()))["text"].to_pylist()
    Tokenizer(models.BPE()).encode_batch(["a", "b", "c", "d"])  # starts the thread pool


KINDS = {  # child kind -> (encode call, word cache)
    "raw+cache": ("encode_batch", "same"),
    "fast+cache": ("encode_batch_fast", "same"),
    "raw": ("encode_batch", "default"),
}


def _stop_here(args, where: str) -> None:
    """--instructions: end the process at once (no teardown counted) before or after the clock."""
    if args.stop == where:
        sys.stdout.flush()
        os._exit(0)


def count_instructions(child: list[str], kind: str, tmp: Path, env: dict) -> int:
    """Instructions the measured part of `kind` executes: callgrind's total for the process stopped
    right after the clock minus the same process stopped right before it. One tokenizer thread
    (an idle thread pool's spinning would be counted otherwise); load-independent, unlike seconds."""
    total = {}
    for stop in ("before", "after"):
        with tempfile.TemporaryDirectory() as d:
            out = f"{d}/callgrind.out"
            subprocess.run(["valgrind", "--tool=callgrind", "--cache-sim=no", "--branch-sim=no",
                            f"--callgrind-out-file={out}", *child, kind, str(tmp), "--stop", stop], check=True,
                           capture_output=True, env={**env, "RAYON_NUM_THREADS": "1"})
            with open(out) as f:
                total[stop] = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
        if kind == "stage":
            shutil.rmtree(tmp / "run", ignore_errors=True)
    return total["after"] - total["before"]


def measure(kind: str, tmp: Path, args) -> dict:
    """One timed run in this (fresh) process: a KINDS peer or `stage`."""
    from tokenmill.stages.base import GlobalJob
    from tokenmill.stages.tokenize import TokenizeConfig, TokenizeStage
    from tokenmill.stages.tokenize.tasks import set_word_cache
    from tokenmill.tokenize import TokenShards, load_tokenizer

    _process_warmup()
    tok_path = str(tmp / "tokenizer.json")
    cfg_args = {"tokenizer": tok_path, "shard_tokens": args.shard_tokens, "val_fraction": 0.01}
    word_cache = TokenizeConfig.word_cache  # the dataclass default
    n_docs = int((tmp / "n_docs").read_text())
    if kind in KINDS:
        import pyarrow.parquet as pq

        call, cache = KINDS[kind]
        texts = pq.read_table(tmp / "texts.parquet")["text"].to_pylist()
        kw = {"add_special_tokens": False} if call == "encode_batch_fast" else {}
        _stop_here(args, "before")
        t0, c0 = time.perf_counter(), time.process_time()
        tok = set_word_cache(load_tokenizer(tok_path), word_cache if cache == "same" else 0)
        t1, c1 = time.perf_counter(), time.process_time()
        encs = getattr(tok, call)(texts, **kw)
        t2, c2 = time.perf_counter(), time.process_time()
        _stop_here(args, "after")
        return {"wall": t2 - t0, "cpu": c2 - c0, "load_wall": t1 - t0, "encode_wall": t2 - t1,
                "encode_cpu": c2 - c1, "tokens": sum(len(e.ids) for e in encs)}

    def runner(name, fn, arg_list):
        """Tasks `args.workers` at a time, as the executor runs them (threads here: no Ray start-up
        in the timing; the tokenizer releases the GIL while it encodes)."""
        with ThreadPoolExecutor(args.workers) as pool:
            return list(pool.map(lambda a: fn(*a), arg_list))

    if args.executor == "ray":  # a local Ray whose workers earlier stages have started (not timed)
        import ray

        from tokenmill.pipeline.executors import RayExecutor, Task

        ray.init(num_cpus=args.workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
        ex = RayExecutor()

        def runner(name, fn, arg_list, cpus=1):  # noqa: F811
            out = {}
            ex.run([Task(str(i), fn, tuple(a), cpus=cpus) for i, a in enumerate(arg_list)],
                   lambda at: out.__setitem__(int(at.task.task_id), at.result if at.ok else at.error))
            assert all(not isinstance(out[i], str) for i in out), out
            return [out[i] for i in range(len(arg_list))]

        runner("warm", _warm, [()] * (2 * args.workers))
        runner("warm", _warm, [()], cpus=ex.max_task_cpus)  # the tokenizer-training worker of a real run
        cpus = {"max_cpus": ex.max_task_cpus, "total_cpus": ex.total_cpus}  # as the pipeline's runner gives them
    else:
        cpus = {}  # threads: one process, the tokenizer's own thread pool

    run = tmp / "run"
    inputs = sorted(str(p) for p in (tmp / "docs").glob("*.parquet"))
    _stop_here(args, "before")
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = TokenizeConfig(**cfg_args)  # its check loads the tokenizer, which run_global then reuses
    TokenizeStage(cfg).run_global(GlobalJob(inputs, str(run / "work/tokenize"), str(run), runner, **cpus))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _stop_here(args, "after")
    ds = TokenShards(str(run / "tokens"), verify=False)
    out = {"wall": wall, "cpu": cpu, "shards": len(ds.rows), "word_cache": cfg.word_cache,
           "tokens": ds.n_tokens("train") + ds.n_tokens("val") - n_docs}  # minus one BOS per document
    shutil.rmtree(run)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeat", type=int, default=1, help="copies of the real text (1: 2.9 MB, no repeats)")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--parts", type=int, default=4, help="input Parquet shards")
    ap.add_argument("--shard-tokens", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2, help="stage tasks at a time (the cores of this machine)")
    ap.add_argument("--executor", choices=["threads", "ray"], default="threads",
                    help="run the stage's tasks in threads (default) or on a local Ray with warm workers")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="tokenizers' threads in every measured process (RAYON_NUM_THREADS)")
    ap.add_argument("--instructions", action="store_true",
                    help="also count each side's instructions under valgrind's callgrind (one tokenizer thread; "
                         "~2 min a process here)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--stop", choices=["before", "after"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.instructions and args.executor != "threads":
        ap.error("--instructions counts one process: use it with --executor threads")
    if args.child:
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args)))
        return 0

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenmill import storage
    from tokenmill.doc import Doc
    from tokenmill.tokenize import train_bpe

    base = load_texts(args.data)
    texts = base * args.repeat
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"text: {len(texts)} documents, {mb:.1f} MB ({len(base)} real documents x {args.repeat})")

    tmp = Path(tempfile.mkdtemp(prefix="tokbench-"))
    try:
        t0 = time.perf_counter()
        tok = train_bpe(base, args.vocab)
        print(f"tokenizer: byte-level BPE, vocab {tok.get_vocab_size()}, trained in {time.perf_counter() - t0:.1f}s "
              f"(not counted)")
        tok.save(str(tmp / "tokenizer.json"))
        pq.write_table(pa.table({"text": texts}), tmp / "texts.parquet")
        (tmp / "n_docs").write_text(str(len(texts)))
        docs = [Doc(id=f"r{i // len(base)}-{i % len(base)}", text=t) for i, t in enumerate(texts)]
        for p in range(args.parts):
            storage.write_docs(str(tmp / f"docs/part-{p:05d}.parquet"), docs[p :: args.parts])
        del docs, texts

        kinds = ["raw+cache", "stage", "fast+cache", "raw"]
        child = [sys.executable, __file__, "--shard-tokens", str(args.shard_tokens), "--workers", str(args.workers),
                 "--executor", args.executor, "--child"]
        env = {**os.environ, "RAYON_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "true"}
        print(f"every measured process: RAYON_NUM_THREADS={args.threads} TOKENIZERS_PARALLELISM=true; stage tasks "
              f"{args.workers} at a time ({args.executor}); load average before: {os.getloadavg()[0]:.2f}")
        t = {k: [] for k in kinds}
        for r in range(args.rounds):
            for k in kinds if r % 2 == 0 else kinds[::-1]:
                res = json.loads(subprocess.run(child + [k, str(tmp)], check=True, capture_output=True, env=env,
                                                text=True).stdout.strip().splitlines()[-1])
                t[k].append(res)
                if k == "stage":
                    shards, word_cache = res["shards"], res["word_cache"]
        ir = {k: count_instructions(child, k, tmp, env) for k in kinds} if args.instructions else {}
        tokens = {x["tokens"] for v in t.values() for x in v}
        if len(tokens) != 1:
            raise SystemExit(f"the runs disagree on the number of text tokens: {tokens}")
        raw_tokens = tokens.pop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    shown = (("wall", "rounds (s)"),) + ((("cpu", "CPU seconds"),) if args.executor == "threads" else ())
    for key, what in shown:  # under Ray the stage's CPU time is spent in the workers, not measured here
        for j, k in enumerate(t):
            print(f"{what if j == 0 else '':12s} {k:10s}" + " ".join(f"{x[key]:5.2f}" for x in t[k]))
    med = {k: statistics.median(x["wall"] for x in v) for k, v in t.items()}
    med_cpu = {k: statistics.median(x["cpu"] for x in v) for k, v in t.items()}

    def versus(peer: str) -> tuple[float, list[float]]:
        """Median over rounds of peer wall / stage wall (each round's pair saw the same machine)."""
        rs = sorted(p["wall"] / s["wall"] for p, s in zip(t[peer], t["stage"]))
        return statistics.median(rs), rs

    ratio, ratios = versus("raw+cache")
    enc_only = sorted(p["encode_wall"] / s["wall"] for p, s in zip(t["raw+cache"], t["stage"]))
    load = statistics.median(p["load_wall"] for p in t["raw+cache"])
    print(f"peer  raw encode_batch, same word cache ({word_cache:,})  {mb / med['raw+cache']:7.2f} MB/s  "
          f"(median {med['raw+cache']:.2f}s incl. loading the tokenizer, {load:.2f}s; {raw_tokens:,} tokens)")
    print(f"ours  tokenize stage (read, encode, {shards} shards)    {mb / med['stage']:7.2f} MB/s  "
          f"(median {med['stage']:.2f}s)")
    print(f"ratio ours / same-cache peer {ratio:.2f} (median of per-round ratios "
          f"{' '.join(f'{x:.2f}' for x in ratios)}; floor {FLOOR})")
    cpu = med_cpu["raw+cache"] / med_cpu["stage"]
    print(f"      best of each: {min(x['wall'] for x in t['raw+cache']) / min(x['wall'] for x in t['stage']):.2f}"
          + (f"; by CPU seconds (median): {cpu:.2f}" if args.executor == "threads" else f"; executor {args.executor}"))
    print(f"      against the peer's encode_batch call alone (its tokenizer load not counted): "
          f"{statistics.median(enc_only):.2f} (rounds {enc_only[0]:.2f}-{enc_only[-1]:.2f}; not the floor)")
    for peer, what in (("fast+cache", "raw encode_batch_fast, same word cache"),
                       ("raw", "raw encode_batch, tokenizers' default cache")):
        r, rs = versus(peer)
        by_cpu = f", by CPU {med_cpu[peer] / med_cpu['stage']:.2f}" if args.executor == "threads" else ""
        print(f"peer {what:44s} {mb / med[peer]:5.2f} MB/s (median {med[peer]:.2f}s); ours / it {r:.2f} "
              f"(rounds {rs[0]:.2f}-{rs[-1]:.2f}{by_cpu}; not the floor)")
    for k in kinds[:1] + kinds[2:] if ir else ():
        print(f"instructions {k:10s} {ir[k] / 1e9:6.2f} G, stage {ir['stage'] / 1e9:.2f} G: ours / it {ir[k] / ir['stage']:.2f} "
              f"(callgrind, one tokenizer thread; each side loads the tokenizer inside its count)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if ratio < FLOOR:
        print(f"FAIL: stage throughput {ratio:.2f} x raw < {FLOOR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
