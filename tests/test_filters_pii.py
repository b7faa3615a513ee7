"""PII scrubbing: checksums, what is and is not PII, the stage's counters, and the shared-set figures."""

from __future__ import annotations

import json

import pytest

from tokenmill.doc import Doc
from tokenmill.filters.pii import PiiConfig, PiiScrubber, iban_ok, luhn_ok
from tokenmill.stages.base import StageContext
from tokenmill.stages.filter import PiiStage

IN_SCOPE = {"EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN"}


def scrub(text: str, **cfg) -> str:
    return PiiScrubber(PiiConfig(**cfg)).scrub(text)[0]


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and luhn_ok("6011111111111117")
    assert not luhn_ok("4111111111111112") and not luhn_ok("378282246310006")


def test_iban_checksum():
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33") and not iban_ok("DE89370400440532013001")


def test_iban_needs_its_countrys_length():
    # mod-97 holds ("DE41" is the right check for these digits) but a German IBAN has 22 characters
    short = "DE41370400440532013"
    moved = short[4:] + short[:4]
    assert int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    assert not iban_ok(short) and scrub(f"ref {short}") == f"ref {short}"


def test_cards_only_when_luhn_valid():
    assert scrub("card 4111 1111 1111 1111 ok") == "card <CARD_NUMBER> ok"
    assert scrub("card 4111111111111111.") == "card <CARD_NUMBER>."
    assert scrub("order 4111111111111112 shipped") == "order 4111111111111112 shipped"


def test_iban_only_when_checksum_valid():
    assert scrub("pay to DE89 3704 0044 0532 0130 00 today") == "pay to <IBAN> today"
    assert scrub("ref DE89370400440532013001") == "ref DE89370400440532013001"


def test_emails_and_ssn():
    assert scrub("write to jane.doe+news@mail.example.co.uk.") == "write to <EMAIL>."
    assert scrub("SSN 123-45-6789") == "SSN <US_SSN>"
    assert scrub("SSN 666-45-6789 is never issued") == "SSN 666-45-6789 is never issued"


def test_public_ips_replaced_private_and_documentation_kept():
    assert scrub("from 8.8.8.8 and 2001:4860:4860::8888") == "from <IP_ADDRESS> and <IP_ADDRESS>"
    kept = ("lan 192.168.1.1, 10.0.0.7, 172.16.5.4, lo 127.0.0.1, ll 169.254.1.1, doc 203.0.113.5, "
            "::1, fe80::1, 2001:db8::1")
    assert scrub(kept) == kept


@pytest.mark.parametrize("phone", [
    "+1 201-948-1927", "(201) 948-1927", "201.948.1927", "+44 20 7946 0958", "+41 (0)85 806 98 67",
    "0341 8387176", "01.84.17.61.18", "030 12345678", "+447700677662", "463-612-6138x036",
    # formats the first rules missed (libphonenumber decides): Swedish area code then groups,
    # "00" international prefix, parenthesised German area code, Belgian "/" after the area code
    "08-909 960 30", "0041 62 585 51 90", "00420 604 913 909", "(02199) 35181", "03/ 016 61 31",
])
def test_phone_formats(phone):
    assert scrub(f"Call me at {phone} tomorrow") == "Call me at <PHONE_NUMBER> tomorrow"


@pytest.mark.parametrize("text", [
    "Released on 2019-05-12 at 10:30:00, updated 12.05.2021 and 05/12/2021.",
    "It costs $1,299.99 (or 1.299,00 €), about 1 234 567 yen.",
    "Send it to 10115 Berlin or Beverly Hills, CA 90210-1234.",
    "Upgrade from version 1.2.3 to v2.10.4.1, build 20240105.",
    "Population 8 336 817 in 2020; scores 12 15 18 20; pages 120-135; ISBN 978-3-16-148410-0.",
    "Order no. 123456789012 ships in 3-5 days; room 4-12; 1980-07-28 19:49:46.",
])
def test_ordinary_numbers_untouched(text):
    assert scrub(text) == text


def test_bare_digit_runs_need_a_phone_cue():
    assert scrub("Phone: 26018159.") == "Phone: <PHONE_NUMBER>."
    assert scrub("order 26018159 shipped") == "order 26018159 shipped"
    assert scrub("call 9603 0824 now") == "call <PHONE_NUMBER> now"
    assert scrub("lot 9603 0824 sold") == "lot 9603 0824 sold"


def test_numbers_valid_in_no_known_region_are_kept():
    # NANP area codes never start with 0 or 1: "(101) 661-3186" is no North American number
    assert scrub("Call (101) 661-3186 today") == "Call (101) 661-3186 today"
    assert scrub("Call (201) 661-3186 today") == "Call <PHONE_NUMBER> today"


def test_types_switch_off_and_placeholders():
    text = "mail a@b.example or call +1 201-948-1927"
    assert scrub(text, phone=False) == "mail <EMAIL> or call +1 201-948-1927"
    assert scrub(text, email_placeholder="[mail]") == "mail [mail] or call <PHONE_NUMBER>"


def test_stage_never_drops_and_counts_per_type():
    stage = PiiStage()
    stage.setup()
    ctx = StageContext("pii")
    docs = [Doc("a", text="x@y.example and 8.8.4.4 and z@w.example"), Doc("b", text="nothing here"), Doc("c")]
    out = list(stage.run(iter(docs), ctx))
    assert [d.id for d in out] == ["a", "b", "c"]
    assert out[0].text == "<EMAIL> and <IP_ADDRESS> and <EMAIL>"
    assert ctx.stats.counters["pii.email"] == 2 and ctx.stats.counters["pii.ip"] == 1
    assert ctx.stats.counters["pii.documents_changed"] == 1 and not ctx.stats.drops


def test_shared_set_recall_and_clean_sentences(shared_data):
    """The issue's figures on presidio-evaluator's 500 sentences: recall >= 0.95, <= 1% clean changed."""
    rows = [json.loads(line) for line in open(shared_data / "pii" / "labeled.jsonl")]
    scrubber = PiiScrubber()
    caught = total = clean = changed = 0
    for r in rows:
        out = scrubber.scrub(r["text"])[0]
        spans = [s for s in r["spans"] if s["type"] in IN_SCOPE]
        total += len(spans)
        caught += sum(s["value"] not in out for s in spans)
        if not spans:
            clean += 1
            changed += out != r["text"]
    assert total == 99 and clean == 415, (total, clean)
    assert caught / total >= 0.95, f"recall {caught}/{total}"
    assert changed / clean <= 0.01, f"{changed}/{clean} sentences without PII changed"


def test_digits_inside_urls_are_not_cards_or_phones():
    text = "see https://www.facebook.com/page/posts/2395361813834269 and https://x.example/?id=2019876543"
    assert scrub(text) == text


def test_held_out_half_recall_per_type(shared_data):
    """On the half of the shared set bench/pii.py holds out (the rules were written on the other
    half): recall >= 0.95 for each type, <= 1% of clean sentences changed."""
    import importlib.util
    from collections import Counter
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("splits", Path(__file__).resolve().parents[1] / "bench" / "splits.py")
    splits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(splits)
    rows = splits.split([json.loads(line) for line in open(shared_data / "pii" / "labeled.jsonl")])[1]
    scrubber = PiiScrubber()
    caught, total = Counter(), Counter()
    clean = changed = 0
    for r in rows:
        out = scrubber.scrub(r["text"])[0]
        spans = [s for s in r["spans"] if s["type"] in IN_SCOPE]
        for s in spans:
            total[s["type"]] += 1
            caught[s["type"]] += s["value"] not in out
        if not spans:
            clean += 1
            changed += out != r["text"]
    assert sum(total.values()) == 47 and clean == 209, (total, clean)
    low = {t: f"{caught[t]}/{total[t]}" for t in total if caught[t] / total[t] < 0.95}
    assert not low, f"held-out recall below 0.95: {low}"
    assert changed / clean <= 0.01, f"{changed}/{clean} clean sentences changed"
