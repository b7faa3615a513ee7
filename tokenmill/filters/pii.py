"""PII scrubbing: find personal data in text and replace it with a fixed placeholder per type.

In: a string. Out: the scrubbed string and how many spans of each type were replaced.
Types (each on/off, placeholder configurable): e-mail addresses; public IPv4/IPv6 addresses
(private, loopback, link-local, multicast, reserved and documentation ranges are not PII:
`ipaddress`' `is_global` decides); phone numbers (international "+cc ...", national with a
trunk 0, NANP "201-948-1927"/"(201) 948-1927", grouped European "51 516 33 75", with "x123"
extensions); payment card numbers (12-19 digits, contiguous or in 4-groups / Amex 4-6-5,
a known issuer prefix, Luhn-checked); IBANs (country + check digits, mod-97 checked); US
SSNs ("123-45-6789", dashed only; invalid areas 000/666/9xx, group 00, serial 0000 skipped).

Each detector proposes spans on the original text; spans are accepted in the priority
order email > iban > card > ssn > ip > phone, and a later span that overlaps an accepted one
is ignored, so a card number is never half-replaced as a phone number.

Ambiguous digit runs need a phone cue ("phone", "tel", "mobile", "fax", "call", ...) in the
48 characters before them: plain 10-digit runs, local 7-digit "780 6326", and groups that
read like a thousands-separated number ("72 128 827"). Dates ("1980-07-28", "28.07.1980"),
times, prices, postcodes, version numbers and ordinary numbers are left alone.

Recall per type and clean sentences changed, against datatrove's PIIFormatter: bench/pii.py
(figures in the README).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass

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
    """ISO 13616 mod-97 check ("GB82 WEST 1234 5698 7654 32" -> True)."""
    s = iban.replace(" ", "").upper()
    if not (15 <= len(s) <= 34) or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


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
_PHONE = re.compile(
    r"(?<![\w.+/-])(\+\d{1,3}[ .-]?)?(\(\d{1,4}\)[ .-]?)?(\d{1,11}(?:[ .-]\d{1,11}){0,6})"
    r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?![\w]|[.,/-]\d)"
)
_PHONE_CUE = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|mob|cell|fax|desk|office|call|calls|called|ring|text|sms|"
    r"whatsapp|contact|reach|dial|messages?|answering|hotline)\b"
)
_GROUPS = re.compile(r"\d+")


def _has_cue(text: str, start: int) -> bool:
    return _PHONE_CUE.search(text, max(0, start - 48), start) is not None


def _looks_like_date(groups: list[str]) -> bool:
    if len(groups) != 3:
        return False
    a, b, c = groups
    year_first = len(a) == 4 and 1800 <= int(a) <= 2100 and 1 <= int(b) <= 12 and len(c) <= 2
    year_last = len(c) in (2, 4) and 1 <= int(a) <= 31 and 1 <= int(b) <= 31 and len(a) <= 2 and len(b) <= 2
    return year_first or year_last


def _phone_ok(text: str, m: re.Match) -> bool:
    plus, paren, body = m.group(1), m.group(2), m.group(3)
    groups = _GROUPS.findall(body)
    seps = set(re.findall(r"[ .-]", body))
    digits = sum(map(len, groups)) + (len(_GROUPS.findall(paren)[0]) if paren else 0)
    if len(seps) > 1:
        return False  # "1980-07-28 19" mixes separators: not one number
    if plus:
        return 8 <= digits + len(plus.strip(" .-+")) <= 16
    if _looks_like_date(groups):
        return False
    lens = [len(g) for g in groups]
    if paren:  # "(201) 948-1927"
        return 7 <= digits <= 11
    if len(groups) == 1:  # a plain digit run: only NANP-shaped or trunk-0 numbers, with a cue
        g = groups[0]
        nanp = len(g) == 10 and g[0] in "23456789" and g[3] in "23456789"
        trunk = g[0] == "0" and 10 <= len(g) <= 11
        return (nanp or trunk) and _has_cue(text, m.start())
    if lens == [3, 3, 4] or (lens == [1, 3, 3, 4] and groups[0] == "1"):
        return True  # NANP 201-948-1927 / 1-201-948-1927
    if groups[0][0] == "0" and 9 <= digits <= 12 and (len(groups) >= 3 or (lens[0] <= 4 and lens[1] >= 6)):
        return True  # national format with trunk prefix: 0341 8387176, 01.84.17.61.18
    if lens == [3, 4]:  # local 7-digit: 780 6326
        return _has_cue(text, m.start())
    if len(groups) >= 3 and 8 <= digits <= 12 and all(2 <= n <= 4 for n in lens):
        thousands = lens[0] <= 3 and all(n == 3 for n in lens[1:])  # "72 128 827" == 72,128,827?
        small = seps == {" "} and max(lens) <= 2  # "12 15 18 20": a list of small numbers?
        # three groups ("2270-66-1551") are as often an ID or a number as a phone: need a cue
        return _has_cue(text, m.start()) if (thousands or small or len(groups) == 3) else True
    return False


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
