"""PII scrubbing: find personal data in text and replace it with a fixed placeholder per type.

In: a string. Out: the scrubbed string and how many spans of each type were replaced.
Types (each on/off, placeholder configurable): e-mail addresses; public IPv4/IPv6 addresses
(private, loopback, link-local, multicast, reserved and documentation ranges are not PII:
`ipaddress`' `is_global` decides); phone numbers; payment card numbers (12-19 digits,
contiguous or in 4-groups / Amex 4-6-5, a known issuer prefix, Luhn-checked); IBANs
(python-stdnum: the country's length and BBAN format, and mod-97); US SSNs ("123-45-6789",
dashed only; invalid areas 000/666/9xx, group 00, serial 0000 skipped).

Phones: a regex proposes digit groups (with "+cc"/"00cc", "(area)", " .-/" separators, "x123"
extensions); libphonenumber (`phonenumbers`) decides. With a country prefix the number must be
possible for that country; without one it must be valid in one of `PHONE_REGIONS`. Ambiguous
shapes also need a phone cue ("phone", "tel", "mobile", "fax", "call", ...) in the 48
characters before them: plain digit runs, local numbers ("780 6326"), three groups that read
like a thousands-separated number or an ID ("72 128 827"). Dates, times, prices, postcodes,
version numbers and ordinary numbers are left alone.

Each detector proposes spans on the original text; spans are accepted in the priority
order email > iban > card > ssn > ip > phone, and a later span that overlaps an accepted one
is ignored, so a card number is never half-replaced as a phone number.

Held-out half of shared/data/pii (bench/pii.py, rules written on the other half): recall 1.00
for each type, 1/209 clean sentences changed; Presidio's recognizers 0.82 on phones, 0.81 on
cards. Cost, one core: ~20,000 of those sentences or ~4 MB of news text per CPU-second
(libphonenumber made the sentences ~25% slower, the news text no slower). BENCHMARKS.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as stdnum_iban

TYPES = ("email", "ip", "phone", "card", "iban", "ssn")


@dataclass(frozen=True)
class PiiConfig:
    """Which types to replace, and the fixed text that replaces each."""

    email: bool = True
    ip: bool = True
    phone: bool = True
    card: bool = True
    iban: bool = True
    ssn: bool = True
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE_NUMBER>"
    card_placeholder: str = "<CARD_NUMBER>"
    iban_placeholder: str = "<IBAN>"
    ssn_placeholder: str = "<US_SSN>"

    def __post_init__(self):
        for t in TYPES:
            if not isinstance(getattr(self, f"{t}_placeholder"), str):
                raise ValueError(f"pii.{t}_placeholder must be a string")


# --- checksums -----------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn check every payment card number passes ("4111111111111111" -> True)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 via python-stdnum: the country's length and BBAN format, and the mod-97 check
    ("GB82 WEST 1234 5698 7654 32" -> True; "GB82 WEST 1234" -> False: too short for GB)."""
    return stdnum_iban.is_valid(iban)


# Issuer prefixes: Visa 4, Mastercard 51-55/2221-2720, Maestro 50/56-69, Amex 34/37,
# Diners 30/36/38/39, JCB 35/1800/2131, Discover/UnionPay 6, Mir 2200-2204.
_CARD_PREFIX = re.compile(r"4|5[0-9]|6|3[0-9]|2[2-7]|1800|2131")


def card_ok(digits: str) -> bool:
    return 12 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) is not None and luhn_ok(digits)


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


# --- patterns ----------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![\w-])"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")
_CARD = re.compile(
    r"(?<![\w.,+/=:-])(?:\d{12,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})(?![\d-]|[.,]\d)"
)
_SSN = re.compile(r"(?<![\d.-])(\d{3})-(\d{2})-(\d{4})(?![\d-]|\.\d)")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\d|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# A phone candidate: an optional international prefix ("+41", "0041"), an optional area code in
# parentheses ("(0)", "(201)"), then 1-7 digit groups joined by one of " .-/" (a "/" or "-" may
# end the area code before space-separated groups: "03/ 016 61 31", "08-26 01 81"), then an
# optional extension ("x036", "ext. 12").
_PHONE = re.compile(
    r"(?<![\w.+/-])(\+\d{1,3}[ .-]?|00\d{1,3}[ .-])?(\(\d{1,5}\)[ .-]?)?"
    r"(\d{1,11}(?:(?:[ .-]|/ ?)\d{1,11}){0,6})"
    r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w]|[.,/-]\d)"
)
_PHONE_CUE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|mob|cell|fax|desk|office|call|calls|called|ring|text|sms|"
    r"whatsapp|contact|reach|dial|messages?|answering|hotline)\b"
)
_GROUPS = re.compile(r"\d+")


# Countries whose national formats are tried (libphonenumber's metadata) for numbers written
# without a country code: North America, the British Isles, Western/Central/Northern Europe,
# Australia. A number valid in none of them is not replaced unless it carries "+cc"/"00cc".
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "PL", "CZ", "DK", "SE", "NO",
                 "PT", "IE", "AU")


def _has_cue(text: str, start: int) -> bool:
    return _PHONE_CUE.search(text, max(0, start - 48), start) is not None


def _looks_like_date(groups: list[str]) -> bool:
    if len(groups) != 3:
        return False
    a, b, c = groups
    year_first = len(a) == 4 and 1800 <= int(a) <= 2100 and 1 <= int(b) <= 12 and len(c) <= 2
    year_last = len(c) in (2, 4) and 1 <= int(a) <= 31 and 1 <= int(b) <= 31 and len(a) <= 2 and len(b) <= 2
    return year_first or year_last


def _valid_somewhere(national: str) -> bool:
    """libphonenumber says the digits are a valid national number in one of `PHONE_REGIONS`."""
    for region in PHONE_REGIONS:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(national, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


def _phone_ok(text: str, m: re.Match) -> bool:
    intl, paren, body = m.group(1), m.group(2), m.group(3)
    groups = _GROUPS.findall(body)
    digits = sum(map(len, groups)) + (len(_GROUPS.findall(paren)[0]) if paren else 0)
    seps = re.findall(r"/ ?|[ .-]", body)
    if len(set(seps[1:])) > 1 or (len(set(seps)) > 1 and seps[0] == " "):
        return False  # "1980-07-28 19:49" mixes separators: not one number
    if intl:  # "+41 (0)62 585 51 90", "0041 62 585 51 90": libphonenumber knows each country's lengths
        cc = intl.strip(" .-+")
        cc = cc[2:] if intl.startswith("00") else cc
        try:
            number = phonenumbers.parse("+" + cc + (paren or "") + body, None)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.is_possible_number(number)
    if not 7 <= digits <= 12 or _looks_like_date(groups):
        return False
    national = (paren or "") + body
    lens = [len(g) for g in groups]
    if paren or lens == [3, 3, 4] or (lens == [1, 3, 3, 4] and groups[0] == "1"):
        strong = True  # "(201) 948-1927", "(02199) 35181", NANP "201-948-1927"
    elif groups[0][0] == "0" and digits >= 9 and (len(groups) >= 3 or len(groups) == 1 or lens[0] <= 5):
        strong = True  # national format with trunk prefix: "0341 8387176", "01.84.17.61.18", "08-909 960 30"
    elif len(groups) >= 4 and all(2 <= n <= 4 for n in lens) and not (seps[0] == " " and max(lens) <= 2):
        strong = True  # "28-64-66-98"; "12 15 18 20" reads as a list of small numbers
    else:
        # plain runs ("5403926876", "26018159"), local numbers ("780 6326", "9603 0824"), three
        # groups ("72 128 827" could be 72,128,827; "2270-66-1551" an ID): only after a phone cue
        strong = False
    if not strong and not _has_cue(text, m.start()):
        return False
    return _valid_somewhere(national)


def find_pii(text: str, types: tuple[str, ...] = TYPES) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans, sorted by start."""
    found: list[tuple[int, int, str]] = []

    def add(start: int, end: int, kind: str) -> None:
        if all(end <= s or start >= e for s, e, _ in found):
            found.append((start, end, kind))

    if "email" in types and "@" in text:
        for m in _EMAIL.finditer(text):
            add(m.start(), m.end(), "email")
    if "iban" in types:
        for m in _IBAN.finditer(text):
            if iban_ok(m.group()):
                add(m.start(), m.end(), "iban")
    if "card" in types:
        for m in _CARD.finditer(text):
            if card_ok(re.sub(r"[ -]", "", m.group())):
                add(m.start(), m.end(), "card")
    if "ssn" in types:
        for m in _SSN.finditer(text):
            if ssn_ok(*m.groups()):
                add(m.start(), m.end(), "ssn")
    if "ip" in types:
        for m in _IPV4.finditer(text):
            if public_ip(m.group()):
                add(m.start(), m.end(), "ip")
        if "::" in text or text.count(":") >= 7:
            for m in _IPV6.finditer(text):
                if public_ip(m.group()):
                    add(m.start(), m.end(), "ip")
    if "phone" in types:
        for m in _PHONE.finditer(text):
            if _phone_ok(text, m):
                add(m.start(), m.end(), "phone")
    return sorted(found)


class PiiScrubber:
    """`scrub(text) -> (text, Counter(type -> replacements))`."""

    def __init__(self, config: PiiConfig | None = None):
        self.config = config = config if config is not None else PiiConfig()
        self.types = tuple(t for t in TYPES if getattr(config, t))
        self.placeholders = {t: getattr(config, f"{t}_placeholder") for t in TYPES}

    def scrub(self, text: str) -> tuple[str, Counter]:
        spans = find_pii(text, self.types)
        counts: Counter = Counter()
        if not spans:
            return text, counts
        out, pos = [], 0
        for start, end, kind in spans:
            out.append(text[pos:start])
            out.append(self.placeholders[kind])
            counts[kind] += 1
            pos = end
        out.append(text[pos:])
        return "".join(out), counts
