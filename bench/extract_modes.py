"""Extraction modes on the 150 real pages of ../shared/data/extraction: snippet F1 and CPU per page.

Side by side in one process, in alternating order, `--repeats` times:
  bare trafilatura   trafilatura.extract(raw bytes, favor_precision=True, include_comments=False)
  tokenmill trafilatura   ExtractStage (decoding, then trafilatura, FineWeb settings)
  tokenmill resiliparse   ExtractStage(extractor="resiliparse") (the `fast` extra)
  (and bare trafilatura with fast=True, for reference)
Extraction runs in process here (`isolate: false`) so CPU time is the extractor's, not a pipe's;
the text is the same as through the child process. Score = precision/recall/F1 over the
`with`/`without` snippets of expected.jsonl, as trafilatura's own evaluation counts them; on
all 150 pages and on a held-out half (sha1 of seed + URL; nothing here is tuned, the half is
printed as a check on the spread). Exits 1 when tokenmill's trafilatura mode scores below bare
trafilatura (0.005 slack).

    .venv/bin/python bench/extract_modes.py [--repeats 3] [--seed 11]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import trafilatura

from tokenmill.doc import Doc
from tokenmill.readers import InputConfig, Shard, read_shard
from tokenmill.stages.base import StageContext
from tokenmill.stages.extract import ExtractConfig, ExtractStage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import DATA  # noqa: E402


def snippet_scores(texts: dict, expected: dict) -> tuple[float, float, float]:
    tp = fp = fn = 0
    for url, e in expected.items():
        t = texts.get(url) or ""
        tp += sum(s in t for s in e["with"])
        fn += sum(s not in t for s in e["with"])
        fp += sum(s in t for s in e["without"])
    p, r = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return p, r, 2 * p * r / max(1e-9, p + r)


def stage_mode(**opts):
    stage = ExtractStage(ExtractConfig(isolate=False, **opts))
    stage.setup()

    def run(docs: list[Doc]) -> dict:
        fresh = (Doc(d.id, url=d.url, raw=d.raw, http_charset=d.http_charset) for d in docs)
        return {d.url: d.text for d in stage.run(fresh, StageContext("extract"))}
    return run


def bare_mode(**opts):
    def run(docs: list[Doc]) -> dict:
        return {d.url: trafilatura.extract(d.raw, include_comments=False, **opts) for d in docs}
    return run


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    expected = {}
    for line in open(DATA / "extraction/expected.jsonl", encoding="utf-8"):
        row = json.loads(line)
        expected[row["url"]] = row
    docs = list(read_shard(Shard(0, str(DATA / "extraction/pages.warc.gz"), "warc"), InputConfig(),
                           StageContext("ingest")))
    held = {u: e for u, e in expected.items() if hashlib.sha1(f"{args.seed}:{u}".encode()).digest()[0] % 2}
    modes = {
        "bare trafilatura": bare_mode(favor_precision=True),
        "tokenmill trafilatura": stage_mode(),
        "tokenmill resiliparse": stage_mode(extractor="resiliparse"),
        "bare trafilatura fast=True": bare_mode(favor_precision=True, fast=True),
    }
    cpu = {m: [] for m in modes}
    texts = {}
    for r in range(args.repeats):
        for name in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
            t0 = time.process_time()
            texts[name] = modes[name](docs)
            cpu[name].append((time.process_time() - t0) / len(docs) * 1000)
    print(f"{len(docs)} pages, {args.repeats} repeats, alternating order; CPU ms per page median [min-max]")
    print(f"{'mode':28s} {'P':>6s} {'R':>6s} {'F1':>6s} {'F1 held-out':>11s} {'CPU ms/page':>22s}")
    f1 = {}
    for name in modes:
        p, r, f = snippet_scores(texts[name], expected)
        f1[name] = f
        fh = snippet_scores(texts[name], held)[2]
        c = cpu[name]
        print(f"{name:28s} {p:6.3f} {r:6.3f} {f:6.3f} {fh:11.3f} {statistics.median(c):8.1f} "
              f"[{min(c):.1f}-{max(c):.1f}]")
    base = statistics.median(cpu["bare trafilatura"])
    for name in modes:
        print(f"{name} vs bare trafilatura: CPU x{statistics.median(cpu[name]) / base:.2f}, "
              f"F1 {f1[name] - f1['bare trafilatura']:+.3f}")
    ok = f1["tokenmill trafilatura"] >= f1["bare trafilatura"] - 0.005
    print("floor (tokenmill trafilatura F1 >= bare trafilatura's - 0.005):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
