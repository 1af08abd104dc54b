"""The PII vocabulary: entity types, their priority on overlap, policies, placeholders, and a found span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Entity = Literal["email", "phone", "credit_card", "iban", "ip_address", "us_ssn", "secret", "person"]
# Also the priority when spans overlap: the more specific pattern wins (a card number is not a phone number).
ENTITIES: tuple[Entity, ...] = ("secret", "email", "iban", "credit_card", "us_ssn", "ip_address", "phone", "person")
Policy = Literal["redact", "mask", "hash", "drop"]
PLACEHOLDERS: dict[str, str] = {entity: f"[{entity.upper()}]" for entity in ENTITIES}


@dataclass(frozen=True)
class PiiSpan:
    """One piece of PII in a string: its entity type and [start, end) offsets. It never holds the text."""

    entity: str
    start: int
    end: int
