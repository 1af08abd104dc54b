"""PII in text: find every entity's spans (normalised text, one detector module per family) and rewrite them."""

from __future__ import annotations

from collections.abc import Sequence

from curation.pii.network import find_emails, find_ips
from curation.pii.normalise import normalise
from curation.pii.numbers import card_valid, find_cards, find_ibans, find_ssns, iban_valid, luhn_valid
from curation.pii.persons import find_persons
from curation.pii.phones import find_phones, regions_from_hints
from curation.pii.policies import hash_value, mask_value, redact, rewrite
from curation.pii.secrets import find_secrets, looks_random, shannon_entropy
from curation.pii.spans import ENTITIES, PLACEHOLDERS, Entity, PiiSpan, Policy
from curation.pii.urls import scrub_url, scrub_urls_in_text

__all__ = [
    "ENTITIES", "PLACEHOLDERS", "Entity", "PiiSpan", "Policy", "card_valid", "find_pii", "hash_value", "iban_valid",
    "looks_random", "luhn_valid", "mask_value", "redact", "regions_from_hints", "rewrite", "scrub_url",
    "scrub_urls_in_text", "shannon_entropy",
]  # fmt: skip

_FINDERS = {
    "email": find_emails,
    "credit_card": find_cards,
    "iban": find_ibans,
    "us_ssn": find_ssns,
    "ip_address": find_ips,
    "secret": find_secrets,
    "person": find_persons,
}


def find_pii(
    text: str, region: str = "US", extra_regions: Sequence[str] = (), entities: Sequence[str] = ENTITIES
) -> list[PiiSpan]:
    """PII spans in `text`, sorted by start, non-overlapping (on overlap the entity earlier in ENTITIES wins).

    Detectors run on `normalise(text)` (dashes, spaces and digits of other scripts as ASCII, zero-width
    characters removed) and spans map back to `text`. email (also "(at)"/"[dot]"/"%40" spellings); phone
    (valid in `region` or `extra_regions`, or written with +country code); credit_card (12-19 digits, issuer
    range, Luhn); iban (any case and grouping, country length + mod 97); ip_address (IPv4, IPv6 in all
    forms); us_ssn (AAA-GG-SSSS, or undashed after "SSN"); secret (vendor key formats, bearer tokens,
    private keys, `password=`-style values, high-entropy tokens); person (after a title or a name cue).
    """
    norm = normalise(text)
    found: list[PiiSpan] = []
    for entity, finder in _FINDERS.items():
        if entity in entities:
            found += finder(norm.text)
    if "phone" in entities:
        taken = [f for f in found if f.entity != "person"]
        found += find_phones(norm.text, [region, *extra_regions], taken)
    priority = {entity: rank for rank, entity in enumerate(ENTITIES)}
    found.sort(key=lambda s: (priority[s.entity], s.start, -(s.end - s.start)))
    chosen: list[PiiSpan] = []
    for span in found:
        if all(span.end <= other.start or span.start >= other.end for other in chosen):
            chosen.append(span)
    return sorted((PiiSpan(s.entity, *norm.span(s.start, s.end)) for s in chosen), key=lambda s: s.start)
