"""Tokenize-stage throughput beside raw `Tokenizer.encode_batch`, same text, same tokenizer, same run.

Text: the real documents in shared/data (langid: 75 languages; neardup: news articles), repeated
`--repeat` times under distinct ids. A byte-level BPE (`--vocab`) is trained on them first
(timed, reported, not counted); then
  - peer: `encode_batch(all texts)` in one call (ids only, nothing written), and
  - ours: TokenizeStage.run_global with that tokenizer.json: read the Parquet documents, encode
    in batches, write scratch, shuffle into shards, sha256, manifest (an in-process runner, so
    both use the same cores through the tokenizer's own threads).
Both run `--rounds` times, alternating (the machine is shared); the best time of each counts.
Each round both start from a freshly loaded tokenizer (a cold BPE word cache, like a new
worker); the stage's own tokenizer loading is timed, the peer's is not.
Prints MB/s of UTF-8 text for both and the ratio; exits 1 when ours < 0.9 x the peer.

    .venv/bin/python bench/tokenize_speed.py [--repeat 4] [--vocab 32768] [--parts 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--parts", type=int, default=4, help="input Parquet shards")
    ap.add_argument("--shard-tokens", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2, help="stage tasks at a time (the cores of this machine)")
    args = ap.parse_args()

    from tokenmill import storage
    from tokenmill.doc import Doc
    from tokenmill.stages.base import GlobalJob
    from tokenmill.stages.tokenize import TokenizeConfig, TokenizeStage
    from tokenmill.tokenize import TokenShards, build, load_tokenizer, train_bpe

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
        tok_path = str(tmp / "tokenizer.json")
        tok.save(tok_path)
        docs = [Doc(id=f"r{i // len(base)}-{i % len(base)}", text=t) for i, t in enumerate(texts)]
        inputs = []
        for p in range(args.parts):
            inputs.append(str(tmp / f"docs/part-{p:05d}.parquet"))
            storage.write_docs(inputs[-1], docs[p :: args.parts])
        del docs

        cfg = TokenizeConfig(tokenizer=tok_path, shard_tokens=args.shard_tokens, val_fraction=0.01)

        def runner(name, fn, arg_list):
            """Tasks `args.workers` at a time, as the executor runs them (threads here: no Ray start-up
            in the timing; the tokenizer releases the GIL while it encodes)."""
            with ThreadPoolExecutor(args.workers) as pool:
                return list(pool.map(lambda a: fn(*a), arg_list))
        raw_times, stage_times, raw_cpu, stage_cpu = [], [], [], []
        for r in range(args.rounds):  # alternate, so both see the same load on this shared machine
            fresh = load_tokenizer(tok_path)  # both start cold: a fresh BPE cache, like a new worker
            fresh.encode_batch(base[:50])  # start the thread pool
            t0, c0 = time.perf_counter(), time.process_time()
            encs = fresh.encode_batch(texts)
            raw_times.append(time.perf_counter() - t0)
            raw_cpu.append(time.process_time() - c0)
            raw_tokens = sum(len(e.ids) for e in encs)
            del encs
            run = tmp / f"run{r}"
            job = GlobalJob(inputs, str(run / "work/tokenize"), str(run), runner)
            build._TOKENIZERS.clear()  # the stage loads the tokenizer itself (timed)
            t0, c0 = time.perf_counter(), time.process_time()
            TokenizeStage(cfg).run_global(job)
            stage_times.append(time.perf_counter() - t0)
            stage_cpu.append(time.process_time() - c0)
            ds = TokenShards(str(run / "tokens"), verify=False)
            stage_tokens = ds.n_tokens("train") + ds.n_tokens("val") - len(texts)  # minus one BOS per document
            assert stage_tokens == raw_tokens, f"stage wrote {stage_tokens} text tokens, encode_batch made {raw_tokens}"
            shards = len(ds.rows)
        raw_s, stage_s = min(raw_times), min(stage_times)
        print("rounds (s): raw " + " ".join(f"{t:.2f}" for t in raw_times)
              + " | stage " + " ".join(f"{t:.2f}" for t in stage_times) + "  (best of each is used)")
        print("CPU seconds: raw " + " ".join(f"{t:.2f}" for t in raw_cpu)
              + " | stage " + " ".join(f"{t:.2f}" for t in stage_cpu))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ours, peer = mb / stage_s, mb / raw_s
    ratio = ours / peer
    print(f"peer  raw encode_batch (tokenizers)            {peer:7.2f} MB/s  ({raw_s:.2f}s, {raw_tokens:,} tokens)")
    print(f"ours  tokenize stage (read, encode, {shards} shards) {ours:7.2f} MB/s  ({stage_s:.2f}s)")
    print(f"ratio {ratio:.2f} (floor {FLOOR}); by CPU seconds (best of each): "
          f"{min(raw_cpu) / min(stage_cpu):.2f}")
    if ratio < FLOOR:
        print(f"FAIL: stage throughput {ratio:.2f} x raw < {FLOOR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
