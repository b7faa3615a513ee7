"""The language pre-pass (extract.language_prefilter): how many verdicts it changes, on every real set.

For every real set in ../shared/data, each page goes through tokenmill's FineWeb recipe without
the pre-pass (url_filter -> extract -> language [en] -> quality, in process), and separately
through the pre-pass (filters/prefilter.py: tags stripped by regex, lid.176). The pre-pass only
ever skips pages, so a skip changes a verdict exactly when the recipe would have kept the page:
    verdict change rate = pages skipped that the recipe keeps / pages.
A stricter count is reported beside it: skipped pages whose extracted text the language stage
keeps (whatever quality then says).

Sets: each WARC's response records (extraction/pages.warc.gz; warc/: the CC-MAIN-2020-34
excerpt, the CC-MAIN-2024-22 page, the two wget crawls, ClueWeb09 Japanese pages) and
langid/docs.jsonl (8 sentences each, wrapped in <p> tags: 75 languages). Pages are split into
tune / held-out halves by a fixed seed (sha1 of seed + URL); `prefilter_min_score` is chosen on
the tune half (the lowest on the grid whose skips change no recipe verdict there), and the
held-out half is reported per set. Exits 1 when the held-out verdict change rate at the chosen
score is above `--max-change` (default 0.02: the issue's 98%).

    .venv/bin/python bench/prefilter.py [--seed 11] [--max-change 0.02]
"""

from __future__ import annotations

import argparse
import hashlib
import html as htmllib
import json
import sys
import time
from pathlib import Path

from tokenmill.doc import Doc
from tokenmill.filters.language import LanguageConfig
from tokenmill.filters.prefilter import MAX_CHARS, LanguagePrefilter
from tokenmill.filters.quality import QualityConfig
from tokenmill.filters.url import UrlFilterConfig
from tokenmill.readers import InputConfig, Shard, read_shard
from tokenmill.stages.base import StageContext
from tokenmill.stages.extract import ExtractConfig, ExtractStage, decode_html
from tokenmill.stages.filter import LanguageStage, QualityStage, UrlFilterStage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import DATA, SOURCES  # noqa: E402

GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def load_sets() -> dict[str, list[Doc]]:
    sets = {}
    for rel in SOURCES:
        docs = list(read_shard(Shard(0, str(DATA / rel), "warc"), InputConfig(), StageContext("ingest")))
        sets[Path(rel).name.removesuffix(".warc.gz")] = docs
    docs = []
    for i, line in enumerate(open(DATA / "langid/docs.jsonl", encoding="utf-8")):
        row = json.loads(line)
        paras = "".join(f"<p>{htmllib.escape(s)}</p>" for s in row["text"].split("\n") if s.strip())
        page = f"<html><head><title>news</title></head><body><article>{paras}</article></body></html>"
        docs.append(Doc(f"langid-{i}", url=f"https://langid.example/{row['lang']}/{i}", raw=page.encode(),
                        http_charset="utf-8"))
    sets["langid (wrapped in <p>)"] = docs
    return sets


def recipe_verdicts(docs: list[Doc]) -> tuple[set[str], set[str]]:
    """(ids the language stage keeps, ids the whole recipe keeps), without the pre-pass."""
    stages = [UrlFilterStage(UrlFilterConfig()), ExtractStage(ExtractConfig(favor_precision=True)),
              LanguageStage(LanguageConfig(languages=("en",))), QualityStage(QualityConfig())]
    for s in stages:
        s.setup()
    try:
        stream = iter(Doc(d.id, url=d.url, raw=d.raw, http_charset=d.http_charset) for d in docs)
        past_language = []
        for i, s in enumerate(stages):
            stream = s.run(stream, StageContext(s.name))
            if i == 2:
                stream = _tee(stream, past_language)
        kept = {d.id for d in stream}
    finally:
        for s in stages:
            s.close()
    return set(past_language), kept


def _tee(stream, into: list):
    for d in stream:
        into.append(d.id)
        yield d


def held_out(doc: Doc, seed: int) -> bool:
    return hashlib.sha1(f"{seed}:{doc.url or doc.id}".encode()).digest()[0] % 2 == 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--max-change", type=float, default=0.02)
    ap.add_argument("--max-chars", type=int, default=MAX_CHARS, help="stripped text lid.176 sees")
    args = ap.parse_args()

    pre = LanguagePrefilter(["en"], min_score=0.0, max_chars=args.max_chars)
    pre.setup()
    rows = []  # (set, held_out, label, score, language keeps, recipe keeps, prefilter seconds)
    t_pre = n_pre = 0.0
    for name, docs in load_sets().items():
        past_language, kept = recipe_verdicts(docs)
        for d in docs:
            t0 = time.perf_counter()
            html, _ = decode_html(d.raw, d.http_charset)
            label, score, _ = pre.predict(html)
            t_pre += time.perf_counter() - t0
            n_pre += 1
            rows.append((name, held_out(d, args.seed), label, score, d.id in past_language, d.id in kept))
    print(f"pre-pass: {t_pre / n_pre * 1000:.1f} ms a page (decode + strip + lid.176), {int(n_pre)} pages")

    def skipped(r, t):
        return r[2] is not None and r[2] != "en" and r[3] >= t

    tune = [r for r in rows if not r[1]]
    chosen = None
    print("tune half: min_score, pages skipped, language verdicts changed, recipe verdicts changed")
    for t in GRID:
        sk = [r for r in tune if skipped(r, t)]
        lang_changed = sum(r[4] for r in sk)
        print(f"  {t:.2f}  {len(sk):4d}/{len(tune)}  {lang_changed}  {sum(r[5] for r in sk)}")
        if chosen is None and sum(r[5] for r in sk) == 0:
            chosen = t
    chosen = chosen if chosen is not None else GRID[-1]
    default = ExtractConfig().prefilter_min_score
    print(f"chosen on the tune half: prefilter_min_score {chosen}; the default (a margin above it): {default}")
    worst = 0.0
    for t in dict.fromkeys((chosen, default)):
        worst = max(worst, report_held_out(rows, t, skipped))
    report_held_out(rows, default, skipped, held=False)

    print("held-out half, every min_score: pages skipped, verdicts changed, worst set's rate")
    for t in GRID:
        ho = [r for r in rows if r[1]]
        rates = []
        for name in dict.fromkeys(r[0] for r in rows):
            h = [r for r in ho if r[0] == name]
            rates.append(sum(r[5] for r in h if skipped(r, t)) / len(h) if h else 0.0)
        print(f"  {t:.2f}  {sum(skipped(r, t) for r in ho):4d}/{len(ho)}  {sum(r[5] for r in ho if skipped(r, t))}  "
              f"{max(rates):.1%}")
    print(f"held-out verdict change rate: worst set {worst:.1%} (limit {args.max_change:.0%}):",
          "met" if worst <= args.max_change else "MISSED")
    return 0 if worst <= args.max_change else 1


def report_held_out(rows, chosen: float, skipped, held: bool = True) -> float:
    """Per set on the held-out half (or every page) at one min_score; returns the worst set's rate."""
    print(f"\n{'held-out half' if held else 'every page (tune + held-out)'}, min_score {chosen}: set, pages, skipped, recipe keeps, verdicts changed (rate), "
          f"language verdicts changed")
    worst = 0.0
    total = [0, 0, 0, 0, 0]
    for name in dict.fromkeys(r[0] for r in rows):
        ho = [r for r in rows if r[0] == name and (r[1] or not held)]
        sk = [r for r in ho if skipped(r, chosen)]
        changed, lang_changed = sum(r[5] for r in sk), sum(r[4] for r in sk)
        rate = changed / len(ho) if ho else 0.0
        worst = max(worst, rate)
        for i, v in enumerate((len(ho), len(sk), sum(r[5] for r in ho), changed, lang_changed)):
            total[i] += v
        print(f"  {name:38s} {len(ho):4d} {len(sk):4d} {sum(r[5] for r in ho):4d} {changed:3d} ({rate:.1%}) "
              f"{lang_changed:3d}")
    print(f"  {'all':38s} {total[0]:4d} {total[1]:4d} {total[2]:4d} {total[3]:3d} ({total[3] / total[0]:.1%}) "
          f"{total[4]:3d}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
