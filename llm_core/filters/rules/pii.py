"""PII scrubbing: replace e-mail addresses, IP addresses, phone numbers and card numbers by placeholders.

The rule never drops a document; it rewrites the text and counts what it replaced, per kind
(``pii_email``, ``pii_ip``, ``pii_phone``, ``pii_credit_card``). With ``replace: false`` it
only counts. :func:`find_pii` is the detector on its own (kind and character span of each
finding) and :func:`score_pii` the precision / recall of it on a labelled set
(``tests/data/pii_labelled.jsonl``), for tests and benchmarks.

How each kind is found (patterns only find candidates; a validator decides):

- ``email`` -> ``<EMAIL>``: ``local@domain.tld`` with an ASCII local part (RFC 5322
  "atext" and dots), domain labels and an alphabetic top-level domain, case-insensitive
  (datatrove's pattern is lower-case only). Image names such as ``logo@2x.png`` are not
  addresses (their "TLD" is a file extension).
- ``ip`` -> ``<IP_ADDRESS>``: dotted-quad IPv4 and IPv6 (full, ``::``-compressed, with an
  embedded IPv4), each validated by :mod:`ipaddress` (octets <= 255, no leading zeros, at
  most one ``::``); an IPv6 address needs two groups and a digit, so ``::1`` and code
  such as ``dead::beef`` are not addresses. By default only **public** addresses are replaced
  (``ip_public_only``): private, loopback, link-local, multicast, reserved and documentation
  ranges (10/8, 192.168/16, 127/8, 192.0.2/24, 2001:db8::/32, fe80::/10 ...) identify no
  one; this is datatrove's ``only_remove_public_ips=True`` default, and BigCode's StarCoder
  pipeline also left private addresses alone. An IPv4-shaped string is a version or a
  section number, not an address, when the nearest cue word before it says so ("version",
  "release", "build", "firmware", "kernel", "section" ...: ``Chrome version 120.0.6099.109``)
  unless a network word ("IP", "server", "host", "DNS", "ping" ...) is nearer, when it is
  glued to letters (``v1.2.3.4``) or has more than four parts (``1.2.3.4.5``), or when all
  four parts are single digits (``1.2.3.4``) and no network word is near (BigCode's filter).
- ``phone`` -> ``<PHONE>``: Google's libphonenumber (the ``phonenumbers`` port)
  ``PhoneNumberMatcher``, which finds candidates and rejects dates, times and publication
  pages itself. Numbers written with ``+`` and a country code are found in any country;
  national numbers only for ``phone_region`` (default ``US``; ``None``: international only).
  ``phone_leniency`` ``strict_grouping`` (default) needs a valid number whose digit groups
  are the country's (``2024-558812`` is no US number though its ten digits would be), and a
  number right after ``#`` or a word like "order", "invoice", "ISBN" is an identifier.
- ``credit_card`` -> ``<CREDIT_CARD>``: 13-19 digits, plain or grouped by single spaces or
  dashes the way cards are printed (4-4-4-4[-3], Amex 4-6-5, Diners 4-6-4), with a card
  network's prefix (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro) and a
  valid Luhn check digit; a random 16-digit number passes Luhn one time in ten, so the
  prefix and grouping matter.

Why not Presidio: presidio-analyzer needs a spaCy model downloaded at run time, which this
pipeline does not do (every model it uses ships in a wheel); its pattern recognisers are
the same kind of patterns plus validators as here. Names and street addresses need a
model and are not handled.

Every pattern is linear-time: lookbehinds forbid starting inside a run of the characters a
match is made of, and the repetitions are bounded or unambiguous, so no input makes them
backtrack quadratically. Prose runs at 3-4 M characters per second on one core (WikiText-2,
CCNet pages); the phone matcher, pure Python, only sees the text around runs of 7+ digits,
so number-dense text (tables, lists of figures) is slower, about 0.1 M characters per
second, still linear. Overlapping findings
are resolved in the order email, IP, credit card, phone (an address's digits are not also
a phone number).
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections import Counter
from typing import ClassVar, Iterable, Literal, NamedTuple

import phonenumbers
import pyarrow as pa
from pydantic import Field

from llm_core.filters.rule import Document, Rule, RuleConfig, Verdict

PiiKind = Literal["email", "ip", "phone", "credit_card"]
KINDS: tuple[str, ...] = ("email", "ip", "credit_card", "phone")  # also the priority on overlaps


class PiiConfig(RuleConfig):
    kinds: list[PiiKind] = Field(default_factory=lambda: ["email", "ip", "phone", "credit_card"])
    replace: bool = True  # False: only count (the signals), leave the text as it is
    email_placeholder: str = "<EMAIL>"
    ip_placeholder: str = "<IP_ADDRESS>"
    phone_placeholder: str = "<PHONE>"
    credit_card_placeholder: str = "<CREDIT_CARD>"
    # Private, loopback, reserved and documentation addresses identify no one (datatrove's default).
    ip_public_only: bool = True
    # Region (ISO 3166 code) of national numbers without a country code; None: "+" numbers only.
    phone_region: str | None = "US"
    phone_leniency: Literal["possible", "valid", "strict_grouping", "exact_grouping"] = "strict_grouping"

    def placeholder(self, kind: str) -> str:
        return getattr(self, f"{kind}_placeholder")


class PiiSpan(NamedTuple):
    kind: str
    start: int
    end: int


# --- e-mail -------------------------------------------------------------------------------
# RFC 5322 atext less "=", "?" and "/", which in practice glue query strings and paths to an
# address ("?contact=jane@example.com") and almost never occur in one.
_ATEXT = r"\-A-Za-z0-9!#$%&'*+^_`{|}~"
_EMAIL = re.compile(
    rf"(?<![{_ATEXT}.])"  # not inside a longer local part: one attempt per run, linear time
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}))"
    r"(?![A-Za-z0-9-])"
)
_NOT_TLDS = frozenset("png jpg jpeg gif svg webp bmp ico tif tiff css js ts py md txt pdf zip".split())


def _emails(text: str) -> Iterable[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        if m.group(2).lower() not in _NOT_TLDS:
            yield m.span()


# --- IP addresses -------------------------------------------------------------------------
_IPV4 = re.compile(r"(?<![A-Za-z0-9_.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![A-Za-z0-9_]|\.[0-9])")
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9_:.])"
    r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}"
    r"(?![A-Za-z0-9_:]|\.[0-9])"
)
_CUES = re.compile(
    r"\b(?:(?P<net>ip|ips|ipv4|ipv6|address(?:es)?|addr|server|host(?:name)?|dns|gateway|router|ping|proxy|"
    r"client|connect(?:ed|ion)?|from|subnet|firewall|vpn|login|logged|visitor)"
    r"|(?P<ver>v|ver|versions?|release[sd]?|rel|build|firmware|fw|kernel|patch(?:ed)?|updated?|upgraded?|"
    r"rev|revision|section|sec|chapter|ch|clause|article|art|paragraph|para|step|item|figure|fig|table|"
    r"rule|standard|oid|snmp|mib|sdk|api|java|python|node|chrome|firefox|android|ios|windows|edition))\b",
    re.IGNORECASE,
)
_CUE_WINDOW = 40


def _nearest_cue(text: str, start: int) -> str | None:
    """'net' or 'ver': the kind of the cue word nearest before ``start`` (on the same line)."""
    before = text[max(0, start - _CUE_WINDOW):start].rsplit("\n", 1)[-1]
    last = None
    for m in _CUES.finditer(before):
        last = m
    return None if last is None else last.lastgroup


def _ip_ok(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, public_only: bool) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not public_only:
        return not ip.is_unspecified
    return ip.is_global and not (ip.is_reserved or ip.is_multicast or ip.is_unspecified)


def _ips(text: str, public_only: bool) -> Iterable[tuple[int, int]]:
    if "." in text:
        for m in _IPV4.finditer(text):
            try:
                ip = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            cue = _nearest_cue(text, m.start())
            if cue == "ver" or (cue is None and all(len(p) == 1 for p in m.group().split("."))):
                continue
            if _ip_ok(ip, public_only):
                yield m.span()
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            value = m.group()
            groups = [g for g in re.split(r"[:.]", value) if g]
            if len(groups) < 2 or not any(c.isdigit() for c in value):
                continue
            try:
                ip = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if _ip_ok(ip, public_only):
                yield m.span()


# --- credit cards ---------------------------------------------------------------------------
_CARD = re.compile(r"(?<![A-Za-z0-9_.,-])[0-9](?:[ -]?[0-9]){12,18}(?![A-Za-z0-9_]|[.,][0-9])")
_CARD_PREFIX = re.compile(
    r"4"  # Visa
    r"|5[1-5]|222[1-9]|22[3-9]|2[3-6]|27[01]|2720"  # Mastercard
    r"|3[47]|30[0-5]|36|38|39|35(?:2[89]|[3-8])"  # Amex, Diners, JCB
    r"|6011|64[4-9]|65|62|5[06-9]|6"  # Discover, UnionPay, Maestro
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(groups: list[str]) -> bool:
    digits = "".join(groups)
    if not 13 <= len(digits) <= 19 or not _CARD_PREFIX.match(digits) or not _luhn(digits):
        return False
    if len(groups) == 1:
        return True
    sizes = [len(g) for g in groups]
    if sizes in ([4, 6, 5], [4, 6, 4]):  # Amex, Diners
        return True
    return len(sizes) >= 4 and all(s == 4 for s in sizes[:-1]) and 1 <= sizes[-1] <= 4


def _cards(text: str) -> Iterable[tuple[int, int]]:
    for m in _CARD.finditer(text):
        value = m.group()
        seps = set(re.findall(r"[ -]", value))
        if len(seps) > 1:
            continue
        groups = re.split(r"[ -]", value)
        # "4111 1111 1111 1111 12/27": try the whole run, then without its trailing groups
        for k in range(len(groups), 0, -1):
            if _card_ok(groups[:k]):
                yield m.start(), m.start() + len(" ".join(groups[:k]))
                break


# --- phone numbers ----------------------------------------------------------------------------
_LENIENCY = {
    "possible": phonenumbers.Leniency.POSSIBLE,
    "valid": phonenumbers.Leniency.VALID,
    "strict_grouping": phonenumbers.Leniency.STRICT_GROUPING,
    "exact_grouping": phonenumbers.Leniency.EXACT_GROUPING,
}
_ID_BEFORE = re.compile(
    r"(?:[#№]|\b(?:order|invoice|ref|reference|account|acct|serial|tracking|ticket|isbn|issn|sku|patent|id)\b"
    r"\.?:?)\s*$",
    re.IGNORECASE,
)
# A phone number has at least 7 digits, each at most 3 characters from the next: only the
# text around such runs (plus some context, cut at whitespace) goes to the matcher, which is
# pure Python and several times slower than the patterns on text with no number in it.
_DIGIT_RUN = re.compile(r"[0-9](?:[^0-9\n]{0,3}[0-9]){6,}")
_CONTEXT = 24


def _phone_windows(text: str) -> Iterable[tuple[int, int]]:
    start = end = -1
    for m in _DIGIT_RUN.finditer(text):
        a, b = max(0, m.start() - _CONTEXT), min(len(text), m.end() + _CONTEXT)
        while 0 < a and not text[a - 1].isspace() and m.start() - a < 2 * _CONTEXT:
            a -= 1
        while b < len(text) and not text[b].isspace() and b - m.end() < 2 * _CONTEXT:
            b += 1
        if a <= end:
            end = max(end, b)
            continue
        if end > 0:
            yield start, end
        start, end = a, b
    if end > 0:
        yield start, end


def _phones(text: str, region: str | None, leniency: str) -> Iterable[tuple[int, int]]:
    for a, b in _phone_windows(text):
        matcher = phonenumbers.PhoneNumberMatcher(
            text[a:b], region or "ZZ", leniency=_LENIENCY[leniency], max_tries=sys.maxsize
        )
        for m in matcher:
            start, end = a + m.start, a + m.end
            if not _ID_BEFORE.search(text, max(0, start - 24), start):
                yield start, end


# --- the detector, the rewrite and the rule ---------------------------------------------------
def find_pii(text: str, config: PiiConfig | None = None) -> list[PiiSpan]:
    """The PII in ``text``: kind and character span of each finding, sorted, not overlapping."""
    c = config if config is not None else PiiConfig()
    if not text:
        return []
    found: list[PiiSpan] = []
    for kind in KINDS:  # priority order
        if kind not in c.kinds:
            continue
        if kind == "email":
            spans = _emails(text)
        elif kind == "ip":
            spans = _ips(text, c.ip_public_only)
        elif kind == "credit_card":
            spans = _cards(text)
        else:
            spans = _phones(text, c.phone_region, c.phone_leniency)
        found.extend(PiiSpan(kind, s, e) for s, e in spans)
    found.sort(key=lambda s: (s.start, KINDS.index(s.kind)))
    kept: list[PiiSpan] = []
    for span in found:  # drop a lower-priority finding overlapping a kept one
        clash = [k for k in kept[-4:] if k.start < span.end and span.start < k.end]
        if not clash:
            kept.append(span)
        elif all(KINDS.index(span.kind) < KINDS.index(k.kind) for k in clash):
            kept = [k for k in kept if k not in clash] + [span]
    return kept


def redact(text: str, spans: list[PiiSpan], config: PiiConfig | None = None) -> str:
    """``text`` with each span (sorted, not overlapping) replaced by its kind's placeholder."""
    c = config if config is not None else PiiConfig()
    parts, pos = [], 0
    for span in spans:
        parts += [text[pos:span.start], c.placeholder(span.kind)]
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)


class Pii(Rule):
    name = "pii"
    Config = PiiConfig
    signals: ClassVar = {f"pii_{kind}": pa.int32() for kind in ("email", "ip", "phone", "credit_card")}

    def check(self, doc: Document) -> Verdict:
        spans = find_pii(doc.text, self.config)
        counts = Counter(s.kind for s in spans)
        signals = {f"pii_{kind}": counts.get(kind, 0) for kind in ("email", "ip", "phone", "credit_card")}
        text = redact(doc.text, spans, self.config) if spans and self.config.replace else None
        return Verdict.keep(text=text, **signals)
