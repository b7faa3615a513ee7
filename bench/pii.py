"""PII scrubbing on the held-out half of shared/data/pii/labeled.jsonl, per type, against peers.

The 500 sentences are split by bench/splits.py (fixed seed) into a tuning half (the rules in
tokenmill/filters/pii.py were written looking at it) and a held-out half (reported). Per
side: recall per in-scope type with counts (a span counts as caught when its value no longer
appears in the output), the share of sentences without in-scope PII that were changed at all,
and sentences/s. Peers, same sentences, same run:

- datatrove `PIIFormatter()` (what FineWeb runs): e-mail and IPv4 only, so only those types
  are compared with it.
- Presidio (presidio-analyzer) for all six types: its predefined recognizers EmailRecognizer,
  IpRecognizer, PhoneRecognizer (libphonenumber, its default regions), CreditCardRecognizer,
  IbanRecognizer, UsSsnRecognizer, each built with its defaults and called as
  `recognizer.analyze(text, recognizer.supported_entities, nlp_artifacts=None)` — the pattern
  recognizers need no spaCy model; without NLP artifacts Presidio's context-word score boost
  does not run, so every result is kept (AnalyzerEngine's default score threshold is 0).
  Detected spans are replaced like ours.

`--generated N` (default 500) adds a second check the rules were not written on: phone
numbers and IBANs that Faker makes for 20 locales (seed 11; the rules' formats were looked at
on seed 7), in short sentences, half with a phone cue word and half without; recall for ours
and Presidio. Needs `pip install -e .[bench]` (presidio-analyzer, faker).

Floors (ours, the chosen split): recall >= 0.95 for every type that has spans in it, clean
sentences changed <= 1%. Exits 1 when one is missed.

    .venv/bin/python bench/pii.py [--split held-out|tuning|all] [--show-misses]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from splits import SEED, part  # noqa: E402

from tokenmill.filters.pii import PiiScrubber  # noqa: E402

IN_SCOPE = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pii" / "labeled.jsonl"


def load(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def evaluate(rows: list[dict], scrub) -> dict:
    """scrub(text) -> text. Caught/total per type, clean sentences changed, misses, sentences/s."""
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
    return {"caught": caught, "total": total, "clean": clean, "changed": changed,
            "docs_per_s": len(rows) / max(seconds, 1e-9), "misses": misses}


def replace_spans(text: str, spans: list[tuple[int, int]], placeholder: str = "<PII>") -> str:
    out, pos = [], 0
    for start, end in sorted(spans):
        if end <= pos:
            continue
        out.append(text[pos:max(pos, start)])
        out.append(placeholder)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def presidio_scrubber():
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # no network: its bundled suffix list
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                          IpRecognizer, PhoneRecognizer, UsSsnRecognizer)

    recognizers = [R() for R in (EmailRecognizer, IpRecognizer, PhoneRecognizer, CreditCardRecognizer,
                                 IbanRecognizer, UsSsnRecognizer)]

    def scrub(text: str) -> str:
        spans = [(r.start, r.end) for rec in recognizers
                 for r in rec.analyze(text, rec.supported_entities, nlp_artifacts=None)]
        return replace_spans(text, spans)

    return scrub


LOCALES = ("en_US", "en_GB", "en_CA", "en_AU", "en_IE", "de_DE", "de_CH", "de_AT", "fr_FR", "fr_CH", "nl_NL",
           "nl_BE", "it_IT", "es_ES", "pt_PT", "pl_PL", "cs_CZ", "da_DK", "sv_SE", "no_NO")
WITH_CUE = ("Phone: {}", "Please call me at {} tomorrow.", "Mobile: {} Fax: none")
WITHOUT_CUE = ("You can reach Anna on {} after six.", "The number {} is hers.")


def generated(n: int, seed: int = 11) -> list[dict]:
    """n phone sentences and n // 5 IBAN sentences from Faker's locale providers, as labelled rows."""
    import random

    from faker import Faker

    rng, rows = random.Random(seed), []
    per = max(1, n // len(LOCALES))
    for loc in LOCALES:
        fake = Faker(loc)
        fake.seed_instance(seed)
        for i in range(per):
            value = fake.phone_number()
            template = rng.choice(WITH_CUE + WITHOUT_CUE)
            text = template.format(value)
            kind = "PHONE_NUMBER" if template in WITH_CUE else "PHONE_NUMBER (no cue)"
            rows.append({"text": text, "spans": [{"type": kind, "value": value}]})
        for i in range(max(1, per // 5)):
            value = fake.iban()
            rows.append({"text": f"Send it to IBAN {value} please.", "spans": [{"type": "IBAN_CODE", "value": value}]})
    return rows


def generated_recall(rows: list[dict], scrub) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = {}
    for r in rows:
        s = r["spans"][0]
        hit = out.setdefault(s["type"], [0, 0])
        hit[0] += s["value"] not in scrub(r["text"])
        hit[1] += 1
    return {k: (a, b) for k, (a, b) in sorted(out.items())}


def recall(r: dict, t: str) -> str:
    n = r["total"][t]
    return f"{r['caught'][t] / n:.2f} ({r['caught'][t]}/{n})" if n else "-"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split", default="held-out", choices=("held-out", "tuning", "all"))
    ap.add_argument("--show-misses", action="store_true")
    ap.add_argument("--generated", type=int, default=500, help="Faker phone sentences (0: skip)")
    args = ap.parse_args()
    rows = part(load(args.data), args.split)

    from datatrove.pipeline.formatters.pii import PIIFormatter

    ours_scrubber, fineweb, presidio = PiiScrubber(), PIIFormatter(), presidio_scrubber()
    ours = evaluate(rows, lambda t: ours_scrubber.scrub(t)[0])
    peers = {"datatrove PIIFormatter": (evaluate(rows, fineweb.format), ("EMAIL_ADDRESS", "IP_ADDRESS")),
             "Presidio recognizers": (evaluate(rows, presidio), IN_SCOPE)}

    print(f"split: {args.split} ({len(rows)} of 500 sentences, seed {SEED}); "
          f"{sum(ours['total'].values())} in-scope spans, {ours['clean']} sentences without in-scope PII")
    head = f"{'':24s}" + "".join(f"{t:>18s}" for t in IN_SCOPE) + f"{'clean changed':>16s}{'sent/s':>9s}"
    print(head)
    for name, r, covers in [("tokenmill PiiScrubber", ours, IN_SCOPE)] + [(n, r, c) for n, (r, c) in peers.items()]:
        cells = "".join(f"{recall(r, t) if t in covers else 'n/a':>18s}" for t in IN_SCOPE)
        print(f"{name:24s}{cells}{r['changed']:>9d}/{r['clean']:<6d}{r['docs_per_s']:>9,.0f}")
    pr = peers["Presidio recognizers"][0]
    both = sum(ours["caught"].values()), sum(pr["caught"].values())
    print(f"all six types: tokenmill caught {both[0]}, Presidio {both[1]} of {sum(ours['total'].values())}; "
          f"speed ratio tokenmill/Presidio {ours['docs_per_s'] / pr['docs_per_s']:.1f}x")
    if args.show_misses:
        for m in ours["misses"]:
            print(m)
    if args.generated:
        gen = generated(args.generated)
        print(f"\ngenerated (Faker, {len(LOCALES)} locales, seed 11), caught/total:")
        for name, scrub in (("tokenmill PiiScrubber", lambda t: ours_scrubber.scrub(t)[0]),
                            ("Presidio recognizers", presidio)):
            cells = "  ".join(f"{k} {a / b:.2f} ({a}/{b})" for k, (a, b) in generated_recall(gen, scrub).items())
            print(f"{name:24s}{cells}")
    low = [t for t in IN_SCOPE if ours["total"][t] and ours["caught"][t] / ours["total"][t] < 0.95]
    ok = not low and ours["changed"] / max(1, ours["clean"]) <= 0.01
    print("floors (every type recall >= 0.95, clean changed <= 1%):", "met" if ok else f"MISSED {low}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
