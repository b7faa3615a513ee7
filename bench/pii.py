"""PII scrubbing on shared/data/pii/labeled.jsonl: ours vs FineWeb's scrubber, same run.

Prints, for tokenmill's PiiScrubber and for datatrove's PIIFormatter (the e-mail + IPv4
scrubber FineWeb runs): recall over the six in-scope span types (a span counts as caught when
its value no longer appears in the output), recall per type, the share of sentences without
in-scope PII that were changed at all, and sentences/s. Checks ours against the floors
(recall >= 0.95, changed clean sentences <= 1%) and exits 1 when one is missed.

    .venv/bin/python bench/pii.py [--data ../shared/data/pii/labeled.jsonl] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from tokenmill.filters.pii import PiiScrubber, find_pii

TYPE_OF = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "IP_ADDRESS": "ip", "CREDIT_CARD": "card",
           "IBAN_CODE": "iban", "US_SSN": "ssn"}
IN_SCOPE = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pii" / "labeled.jsonl"


def load(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate(rows: list[dict], scrub) -> dict:
    """scrub(text) -> text. Returns recall, per-type recall, clean sentences changed, misses, docs/s."""
    caught, total = Counter(), Counter()
    clean = changed = 0
    misses = []
    t0 = time.perf_counter()
    outs = [scrub(r["text"]) for r in rows]
    seconds = time.perf_counter() - t0
    for r, out in zip(rows, outs):
        spans = [s for s in r["spans"] if s["type"] in IN_SCOPE]
        if not spans:
            clean += 1
            if out != r["text"]:
                changed += 1
                misses.append(("changed", r["text"], out))
        for s in spans:
            total[s["type"]] += 1
            if s["value"] not in out:
                caught[s["type"]] += 1
            else:
                misses.append(("missed " + s["type"], s["value"], out))
    return {
        "recall": sum(caught.values()) / max(1, sum(total.values())),
        "per_type": {t: f"{caught[t]}/{total[t]}" for t in IN_SCOPE},
        "spans": sum(total.values()),
        "clean": clean,
        "changed": changed,
        "changed_frac": changed / max(1, clean),
        "docs_per_s": len(rows) / max(seconds, 1e-9),
        "misses": misses,
    }


def typed_recall(rows: list[dict]) -> float:
    """Ours only: a gold span counts when one detected span of the right type covers it."""
    hit = n = 0
    for r in rows:
        found = find_pii(r["text"])
        for s in r["spans"]:
            if s["type"] in TYPE_OF:
                n += 1
                hit += any(a <= s["start"] and s["end"] <= b and k == TYPE_OF[s["type"]] for a, b, k in found)
    return hit / max(1, n)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    rows = load(args.data)

    ours_scrubber = PiiScrubber()
    ours = evaluate(rows, lambda t: ours_scrubber.scrub(t)[0])

    from datatrove.pipeline.formatters.pii import PIIFormatter

    fineweb = PIIFormatter()
    peer = evaluate(rows, fineweb.format)

    for name, r in (("tokenmill PiiScrubber", ours), ("datatrove PIIFormatter (FineWeb)", peer)):
        print(
            f"{name:34s} recall {r['recall']:.3f} over {r['spans']} spans | clean sentences changed "
            f"{r['changed']}/{r['clean']} ({r['changed_frac']:.2%}) | {r['docs_per_s']:,.0f} sentences/s"
        )
        print(f"{'':34s} per type: {r['per_type']}")
    print(f"ours, span covered by a detection of the right type: {typed_recall(rows):.3f}")
    print(f"recall ratio ours/peer: {ours['recall'] / max(peer['recall'], 1e-9):.1f}x")
    if args.show_misses:
        for m in ours["misses"]:
            print(m)
    ok = ours["recall"] >= 0.95 and ours["changed_frac"] <= 0.01
    print("floors (recall >= 0.95, changed <= 1%):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
