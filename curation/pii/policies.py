"""What a found value becomes: the per-entity policies (redact, mask, keyed hash, drop) applied to a string."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from curation.pii.normalise import normalise
from curation.pii.spans import PLACEHOLDERS, PiiSpan

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
    value = normalise(value).text  # zero-width characters, full-width digits: the same value, the same token
    normal = value.strip().lower() if entity in ("email", "person", "secret") else re.sub(r"[^0-9A-Za-z]", "", value)
    if entity == "iban":
        normal = normal.upper()
    digest = hmac.new(key, f"{entity}:{normal}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"[{entity.upper()}:{digest}]"


def rewrite(entity: str, value: str, policy: str, key: bytes = b"") -> str:
    """One found value rewritten by `policy`: see `redact`."""
    if policy == "mask":
        return mask_value(entity, value)
    if policy == "hash":
        if not key:
            raise ValueError("the hash policy needs a key (ScrubConfig.hash_key)")
        return hash_value(entity, value, key)
    return PLACEHOLDERS[entity]


def redact(text: str, spans: Sequence[PiiSpan], policies: Mapping[str, str] | None = None, key: bytes = b"") -> str:
    """`text` with each (non-overlapping) span rewritten by its entity's policy (default: typed placeholder).

    Policies: "redact" -> "[EMAIL]"; "mask" -> see `mask_value`; "hash" -> see `hash_value` (needs `key`);
    "drop" rewrites like "redact" (dropping the record is the caller's job).
    """
    policies = policies or {}
    pieces, cursor = [], 0
    for span in sorted(spans, key=lambda s: s.start):
        policy = policies.get(span.entity, "redact")
        pieces += [text[cursor : span.start], rewrite(span.entity, text[span.start : span.end], policy, key)]
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)
