"""Addresses: email (internationalised, obfuscated "(at)"/"[dot]"/"%40" spellings) and IPv4/IPv6 in every form."""

from __future__ import annotations

import ipaddress
import re

from curation.pii.spans import PiiSpan

_LOCAL = r"(?<![\w.+\-])[\w+\-](?:[\w.+\-]{0,63}[\w+\-])?"
# A DNS label in any script (IDNA allows Unicode labels; their ASCII form is xn--...), and a TLD of letters.
_LABEL = r"[^\W_](?:[\w\-]{0,61}[^\W_])?"
_TLD = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9\-]{2,59})"
_AT = r"(?:@|%40|\s?[\[({<]\s?at\s?[\])}>]\s?)"
_DOT = r"(?:\.|\s?[\[({<]\s?dot\s?[\])}>]\s?)"
# Address shape local@domain.tld, not full RFC 5322: quoted local parts and IP literals are missed, which
# web pages practically never show. "(at)", "[at]", "{dot}" ... are the spellings pages use against scrapers.
_EMAIL = re.compile(rf"(?i){_LOCAL}{_AT}{_LABEL}(?:{_DOT}{_LABEL})*{_DOT}{_TLD}(?![\w\-])")
# "jane at example dot com": both words spelt out, and a TLD a reader would recognise, for precision.
_EMAIL_WORDS = re.compile(
    rf"(?i){_LOCAL}\s+at\s+{_LABEL}(?:\s+dot\s+{_LABEL})*\s+dot\s+(?:com|net|org|edu|gov|info|io|[a-z]{{2}})\b"
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|[01]?\d?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
# "version 1.2.3.4", "v10.0.0.1", "section 4.1.2.3": a version or a numbered heading, not an address.
_VERSION_BEFORE = re.compile(r"(?i)(?:\bversion|\bver\.?|\brelease|\bv|\bsection|\bchapter|§)\s*$")
# A run of hex groups and colons, with an IPv4 tail (::ffff:192.0.2.1) or a zone ("fe80::1%eth0");
# ipaddress decides whether it is really an IPv6 address (times like 12:30:45 and MAC addresses fail).
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" + _OCTET + r"(?:\.\d+){3}|[0-9A-Fa-f]{1,4})?(?:%[0-9A-Za-z.]+)?"
    r"(?![\w:]|\.\d)"
)


def find_emails(text: str) -> list[PiiSpan]:
    if "@" not in text and "%40" not in text and not re.search(r"(?i)\bat\b", text):
        return []
    spans = [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    spans += [PiiSpan("email", m.start(), m.end()) for m in _EMAIL_WORDS.finditer(text)]
    return spans


def find_ips(text: str) -> list[PiiSpan]:
    spans = []
    if "." in text:
        for match in _IPV4.finditer(text):
            if not _VERSION_BEFORE.search(text, max(0, match.start() - 12), match.start()):
                spans.append(PiiSpan("ip_address", match.start(), match.end()))
    if ":" in text:
        for match in _IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(match.group())
            except ValueError:
                continue
            spans.append(PiiSpan("ip_address", match.start(), match.end()))
    return spans
