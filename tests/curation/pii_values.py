"""Planted PII values per entity, in each written form a detector must find, and look-alikes that are not PII."""

from __future__ import annotations

# Found with the default region plus GB and DE (test_pii_entities.py); one value per format family.
FOUND = [
    ("email", "jane.doe@example.com"),
    ("email", "JANE.DOE@EXAMPLE.COM"),
    ("email", "jane.doe(at)example.com"),
    ("email", "jane.doe [at] example [dot] com"),
    ("email", "jane.doe%40example.com"),
    ("email", "ja\u200bne.d\u200coe@exam\u200bple.com"),  # zero-width characters inside
    ("email", "josé.garcía@correo.es"),
    ("email", "用户@例子.广告"),  # internationalised local part and domain
    ("email", "info@xn--bcher-kva.example"),
    ("email", "jane＠example．com"),  # full-width at sign and dot
    ("email", "jane at example dot com"),
    ("phone", "(415) 555-2671"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+49 30 901820"),
    ("phone", "(415) 555\u20130134"),  # en dash
    ("phone", "+44\u00a020\u00a07946\u00a00958"),  # non-breaking spaces
    ("phone", "+49\u202f30\u202f901820"),  # narrow no-break spaces
    ("phone", "\uff0b\uff14\uff14 \uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18"),  # full-width
    ("phone", "(415) 555-0134 ext. 204"),
    ("phone", "415-555-0134 x204"),
    ("phone", "+1-415-555-0134"),
    ("phone", "1-800-555-0199"),
    ("phone", "+33 6 12 34 56 78"),
    ("phone", "+7 495 123-45-67"),
    ("phone", "0049 30 901820"),
    ("phone", "07911 123456"),
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "378282246310005"),
    ("credit_card", "3782 822463 10005"),  # Amex 4-6-5
    ("credit_card", "3056 930902 5904"),  # Diners 4-6-4
    ("credit_card", "6759 6498 2648"),  # Maestro, 12 digits
    ("credit_card", "501800000009"),  # Maestro, 12 digits, plain
    ("credit_card", "6759649826438453"),
    ("credit_card", "4111.1111.1111.1111"),
    ("credit_card", "6011 1111 1111 1117"),  # Discover
    ("credit_card", "3530 1113 3330 0000"),  # JCB
    ("credit_card", "6200 0000 0000 0005"),  # UnionPay
    ("credit_card", "2222 4000 7000 0005"),  # Mastercard 2-series
    ("credit_card", "4000\u00a00566\u00a05566\u00a05556"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("iban", "de89 3704 0044 0532 0130 00"),
    ("iban", "DE89-3704-0044-0532-0130-00"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "nl91abna0417164300"),
    ("iban", "CH93 0076 2011 6238 5295 7"),
    ("ip_address", "192.168.10.254"),
    ("ip_address", "010.001.002.003"),
    ("ip_address", "2001:db8:85a3::8a2e:370:7334"),
    ("ip_address", "::1"),
    ("ip_address", "fe80::1%eth0"),
    ("ip_address", "::ffff:192.0.2.128"),  # IPv4-mapped: redacted whole
    ("ip_address", "2001:DB8:0:0:8:800:200C:417A"),
    ("ip_address", "2001:0db8:0000:0000:0000:ff00:0042:8329"),
    ("ip_address", "64:ff9b::192.0.2.33"),
    ("us_ssn", "123-45-6789"),
    ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    ("secret", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"),
    ("secret", "wJalrXUtnFEMI7K7MDENGbPxRfiCYzEXAMPLEKEY9Qz"),
    ("secret", "xoxb-" + "123456789012-abcdefABCDEF"),
]
# (entity, context before, value): found only with the words before it, the value's span exactly.
IN_CONTEXT = [
    ("us_ssn", "SSN", "123456789"),
    ("us_ssn", "SSN:", "123 45 6789"),
    ("us_ssn", "social security number", "123-45-6789"),
    ("secret", "Authorization: Bearer", "abcDEF123ghiJKL456mno"),
    ("secret", "password=", "hunter2hunter2"),
    (
        "secret",
        "AccountKey=",
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    ),
]
# (value, region): national formats found when the record's region (config, TLD or language) is tried.
NATIONAL = [
    ("06 12 34 56 78", "FR"),
    ("03-1234-5678", "JP"),
    ("0412 345 678", "AU"),
    ("912 345 678", "ES"),
    ("(11) 91234-5678", "BR"),
    ("98765 43210", "IN"),
    ("010-1234-5678", "KR"),
    ("138 0013 8000", "CN"),
    ("8 (495) 123-45-67", "RU"),
    ("00 44 20 7946 0958", "FR"),
]
NOT_PII = [
    "version 1.2.3",
    "version 1.2.3.4",
    "v10.0.0.1",
    "see section 4.1.2.3",
    "Release 2.3.4.5",
    "4111 1111 1111 1112",  # Luhn fails
    "GB82 WEST 1234 5698 7654 33",  # mod 97 fails
    "000-12-3456",  # area 000 is never issued
    "123456789",  # nine digits without an SSN word
    "12:30:45",
    "call at 10:30",
    "00:1A:2B:3C:4D:5E",  # a MAC address
    "999.1.1.1",
    "the quick brown fox jumps over the lazy dog",
    "meet me at home",
    "Chapter 12, page 345",
    "pages 100-200, 300-400",
    "ISBN 978-3-16-148410-0",
    "ISBN 9783161484100",
    "SKU 978316148410",
    "order 4417-2291-0831",
    "Order #4155550134",
    "invoice 2024-000123-45",
    "serial 5500 0000 0004",
    "1234 5678 9012",
    "2026-03-14",
    "14.03.2026",
    "between 2019-2024 and 2025-2030",
    "$1,234.56",
    "€ 1.234,56",
    "1.000.000 visitors",
    "3.14159265358979",
    "id=550e8400-e29b-41d4-a716-446655440000",
]
