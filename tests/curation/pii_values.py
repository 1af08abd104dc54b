"""Planted PII values per entity, and look-alikes that are not PII (shared by the PII tests)."""

from __future__ import annotations

FOUND = [
    ("email", "jane.doe@example.com"),
    ("phone", "(415) 555-2671"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+49 30 901820"),
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "378282246310005"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("ip_address", "192.168.10.254"),
    ("ip_address", "2001:db8:85a3::8a2e:370:7334"),
    ("us_ssn", "123-45-6789"),
    ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    ("secret", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ("secret", "wJalrXUtnFEMI7K7MDENGbPxRfiCYzEXAMPLEKEY9Qz"),
]
NOT_PII = [
    "version 1.2.3",
    "4111 1111 1111 1112",  # Luhn fails
    "GB82 WEST 1234 5698 7654 33",  # mod 97 fails
    "000-12-3456",  # area 000 is never issued
    "12:30:45",
    "999.1.1.1",
    "the quick brown fox jumps over the lazy dog",
    "Chapter 12, page 345",
    "ISBN 978-3-16-148410-0",
]
