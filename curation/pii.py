"""PII in text: detectors per entity type, the policies that rewrite a found value, and redaction of a string."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import phonenumbers

Entity = Literal["email", "phone", "credit_card", "iban", "ip_address", "us_ssn", "secret", "person"]
# Also the priority when spans overlap: the more specific pattern wins (a card number is not a phone number).
ENTITIES: tuple[Entity, ...] = ("secret", "email", "iban", "credit_card", "us_ssn", "ip_address", "phone", "person")
Policy = Literal["redact", "mask", "hash", "drop"]
PLACEHOLDERS: dict[str, str] = {entity: f"[{entity.upper()}]" for entity in ENTITIES}

# Pragmatic address shape (local@domain.tld), not full RFC 5322: quoted local parts and IP literals are
# missed, which web pages practically never show.
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Payment card numbers are 13-19 digits (ISO/IEC 7812), written plain or in groups split by spaces/dashes.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
# IBAN (ISO 13616): country, 2 check digits, up to 30 alphanumerics, printed in groups of four.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
# IBAN lengths of the SWIFT IBAN registry for the countries most often seen; others need 15-34 characters.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
    "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "TR": 26, "UA": 29,
}  # fmt: skip
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
# A run of hex groups and colons; ipaddress decides whether it is really an IPv6 address (times like 12:30 fail).
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|" + _OCTET + r"(?:\.\d+){3})?(?![\w:])")
# US SSN in its printed AAA-GG-SSSS form; the SSA never issues area 000, 666 or 9xx, group 00 or serial 0000.
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
# Vendor key formats, from the vendors' documentation (as gitleaks' and detect-secrets' rules quote them).
_SECRET_PREFIXES = re.compile(
    r"\b(?:"
    r"(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}"  # GitHub tokens
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|(?:sk|rk)_live_[0-9A-Za-z]{20,}"  # Stripe live keys
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI / Anthropic keys
    r"|glpat-[A-Za-z0-9_-]{20}"  # GitLab personal token
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JSON Web Token
    r")"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
)
# `password = value`-style assignments: the value is a secret whatever its shape (detect-secrets' keyword rule).
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|auth)[\w-]*\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
)
# Long base64-like runs (API keys without a known prefix): detect-secrets' Base64HighEntropyString limit, 4.5 bits.
_LONG_TOKEN = re.compile(r"(?<![\w/+=-])[A-Za-z0-9+/_-]{32,}={0,2}(?![\w/+=-])")
_ENTROPY_LIMIT = 4.5
# Person names without a model: a courtesy title and one to three capitalised words, or "my name is ...".
# This catches "Dr. Jane Doe" and "my name is Jane Doe", not bare names ("Jane Doe said"); see bench/README.md.
_PERSON = re.compile(
    r"\b(?:(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Rev)\.?|(?i:my name is|i am|i'm))\s+"
    r"(?P<name>(?-i:[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+){0,2}))"
)
# A phone number needs at least 7 digits; only such runs are handed to phonenumbers (its matcher is the slow part).
_PHONE_CANDIDATE = re.compile(r"(?:\+|\(|\b)\d[\d \t().\-/]{5,24}\d\)?")


@dataclass(frozen=True)
class PiiSpan:
    """One piece of PII in a string: its entity type and [start, end) offsets. It never holds the text."""

    entity: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    """True if the digit string passes the Luhn check (ISO/IEC 7812-1), as every real card number does."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """True if `iban` (spaces allowed) has its country's length and passes ISO 7064 mod 97-10 (remainder 1)."""
    compact = iban.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    if (expected is not None and len(compact) != expected) or not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s character distribution (0 for one repeated character)."""
    counts = Counter(value)
    total = len(value)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def _find_cards(text: str) -> list[PiiSpan]:
    spans = []
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            spans.append(PiiSpan("credit_card", match.start(), match.end()))
    return spans


@lru_cache(maxsize=64)
def _region_shape(region: str) -> tuple[str, int]:
    """(national trunk prefix, fewest digits of a valid national number) from phonenumbers' metadata."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        raise ValueError(f"unknown phone region {region!r}")
    return metadata.national_prefix or "", min(metadata.general_desc.possible_length or (1,))


def _regions_to_try(window: str, regions: Sequence[str]) -> list[str]:
    """Regions under which `window` could hold a valid number; parsing is the slow part, so skip the rest.

    A "+<country code>" number parses under any region (the first is enough). A national number must have
    at least the region's shortest valid length in digits; an extra region's national format starts with
    its trunk prefix ("0" in most of Europe), so "2026-03-14" is not parsed as a GB number.
    """
    digits = re.sub(r"\D", "", window)
    if window.lstrip().startswith("+"):
        return list(regions[:1])
    out = []
    for k, region in enumerate(regions):
        prefix, shortest = _region_shape(region)
        if len(digits) < shortest or (k > 0 and prefix and not digits.startswith(prefix)):
            continue
        out.append(region)
    return out


def _find_phones(text: str, regions: Sequence[str], taken: Sequence[PiiSpan] = ()) -> list[PiiSpan]:
    spans = []
    for candidate in _PHONE_CANDIDATE.finditer(text):
        # Runs already claimed by a card, IBAN, SSN or IP need no phone parse.
        if any(candidate.start() < t.end and t.start < candidate.end() for t in taken):
            continue
        window = candidate.group()
        # National formats ("(020) 7946 0958") are found only under their own region, hence the list.
        # STRICT_GROUPING (phonenumbers' Leniency) also wants the digits grouped as that country writes
        # them: "4417-2291-0831" (an order number) is then no phone.
        for region in _regions_to_try(window, regions):
            for match in phonenumbers.PhoneNumberMatcher(
                window, region, leniency=phonenumbers.Leniency.STRICT_GROUPING
            ):
                spans.append(PiiSpan("phone", candidate.start() + match.start, candidate.start() + match.end))
    return spans


def _find_ips(text: str) -> list[PiiSpan]:
    spans = [PiiSpan("ip_address", m.start(), m.end()) for m in _IPV4.finditer(text)]
    for match in _IPV6.finditer(text):
        try:
            ipaddress.IPv6Address(match.group())
        except ValueError:
            continue
        spans.append(PiiSpan("ip_address", match.start(), match.end()))
    return spans


def _find_secrets(text: str) -> list[PiiSpan]:
    spans = [PiiSpan("secret", m.start(), m.end()) for m in _SECRET_PREFIXES.finditer(text)]
    spans += [PiiSpan("secret", m.start(1), m.end(1)) for m in _SECRET_ASSIGNMENT.finditer(text)]
    for match in _LONG_TOKEN.finditer(text):
        token = match.group()
        mixed = any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token)
        if mixed and shannon_entropy(token) >= _ENTROPY_LIMIT:
            spans.append(PiiSpan("secret", match.start(), match.end()))
    return spans


def _find_persons(text: str) -> list[PiiSpan]:
    return [PiiSpan("person", m.start("name"), m.end("name")) for m in _PERSON.finditer(text)]


def find_pii(
    text: str, region: str = "US", extra_regions: Sequence[str] = (), entities: Sequence[str] = ENTITIES
) -> list[PiiSpan]:
    """PII spans in `text`, sorted by start, non-overlapping (on overlap the entity earlier in ENTITIES wins).

    email; phone (valid in `region` or `extra_regions`, or written with +country code); credit_card
    (Luhn-valid); iban (country length + mod 97); ip_address (IPv4, IPv6); us_ssn (AAA-GG-SSSS, SSA rules);
    secret (vendor key prefixes, private key blocks, `password=`-style values, long high-entropy tokens);
    person (titled names and "my name is ..." only: there is no name model).
    """
    found: list[PiiSpan] = []
    if "email" in entities:
        found += [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    if "credit_card" in entities:
        found += _find_cards(text)
    if "iban" in entities:
        found += [PiiSpan("iban", m.start(), m.end()) for m in _IBAN.finditer(text) if iban_valid(m.group())]
    if "us_ssn" in entities:
        found += [PiiSpan("us_ssn", m.start(), m.end()) for m in _SSN.finditer(text)]
    if "ip_address" in entities:
        found += _find_ips(text)
    if "secret" in entities:
        found += _find_secrets(text)
    if "phone" in entities:
        found += _find_phones(text, [region, *extra_regions], [f for f in found if f.entity != "person"])
    if "person" in entities:
        found += _find_persons(text)
    priority = {entity: rank for rank, entity in enumerate(ENTITIES)}
    found.sort(key=lambda s: (priority[s.entity], s.start, -(s.end - s.start)))
    chosen: list[PiiSpan] = []
    for span in found:
        if all(span.end <= other.start or span.start >= other.end for other in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


# Entities whose last four characters may stay visible when masked (PCI DSS 3.4 allows a card's last four).
_KEEP_LAST_FOUR = frozenset({"credit_card", "iban", "phone", "us_ssn"})


def mask_value(entity: str, value: str) -> str:
    """`value` with letters and digits as '*', separators kept; cards, IBANs, phones and SSNs keep their last 4."""
    alnum = [k for k, c in enumerate(value) if c.isalnum()]
    keep = set(alnum[-4:]) if entity in _KEEP_LAST_FOUR else set()
    return "".join(c if (not c.isalnum() or k in keep) else "*" for k, c in enumerate(value))


def hash_value(entity: str, value: str, key: bytes) -> str:
    """A keyed token "[EMAIL:1f2e...]" for `value`: HMAC-SHA256 of the normalised value, 64 bits shown.

    Normalised first (emails lowercased; numbers reduced to their digits and letters), so the same value
    written two ways gives one token and joins across records still work; without the key it cannot be
    reversed by guessing (which a plain hash of a phone number can).
    """
    normal = value.strip().lower() if entity in ("email", "person", "secret") else re.sub(r"[^0-9A-Za-z]", "", value)
    digest = hmac.new(key, f"{entity}:{normal}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"[{entity.upper()}:{digest}]"


def redact(text: str, spans: Sequence[PiiSpan], policies: Mapping[str, str] | None = None, key: bytes = b"") -> str:
    """`text` with each (non-overlapping) span rewritten by its entity's policy (default: typed placeholder).

    Policies: "redact" -> "[EMAIL]"; "mask" -> see `mask_value`; "hash" -> see `hash_value` (needs `key`);
    "drop" rewrites like "redact" (dropping the record is the caller's job).
    """
    policies = policies or {}
    out = text
    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        policy = policies.get(span.entity, "redact")
        value = text[span.start : span.end]
        if policy == "mask":
            replacement = mask_value(span.entity, value)
        elif policy == "hash":
            if not key:
                raise ValueError("the hash policy needs a key (ScrubConfig.hash_key)")
            replacement = hash_value(span.entity, value, key)
        else:
            replacement = PLACEHOLDERS[span.entity]
        out = out[: span.start] + replacement + out[span.end :]
    return out
