"""The second PII corpus: values in published national formats and real-world spellings, not the detectors' own.

Phone numbers come from libphonenumber's metadata (each region's example numbers, digits re-drawn until the
number is valid again) in national, international and E.164 form with the separators pages really use;
cards from the schemes' published IIN ranges and lengths; IBANs from the SWIFT registry's BBAN structures;
emails, IPs, SSNs and names in the spellings found on the web. Each text carries the page hints a crawl
would have (its country TLD URL and language). Generated in code, deterministically; nothing is downloaded.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import phonenumbers

# (region, language, TLD): the page hints of a text from that country.
REGIONS = (
    ("US", "en", "com"), ("GB", "en", "uk"), ("CA", "en", "ca"), ("AU", "en", "au"), ("IN", "en", "in"),
    ("IE", "en", "ie"), ("NZ", "en", "nz"), ("ZA", "en", "za"), ("DE", "de", "de"), ("AT", "de", "at"),
    ("CH", "de", "ch"), ("FR", "fr", "fr"), ("BE", "fr", "be"), ("ES", "es", "es"), ("MX", "es", "mx"),
    ("AR", "es", "ar"), ("CO", "es", "co"), ("BR", "pt", "br"), ("PT", "pt", "pt"), ("IT", "it", "it"),
    ("NL", "nl", "nl"), ("SE", "sv", "se"), ("DK", "da", "dk"), ("NO", "no", "no"), ("FI", "fi", "fi"),
    ("PL", "pl", "pl"), ("CZ", "cs", "cz"), ("HU", "hu", "hu"), ("RO", "ro", "ro"), ("GR", "el", "gr"),
    ("TR", "tr", "tr"), ("RU", "ru", "ru"), ("UA", "uk", "ua"), ("JP", "ja", "jp"), ("CN", "zh", "cn"),
    ("KR", "ko", "kr"), ("SG", "en", "sg"), ("IL", "he", "il"), ("AE", "ar", "ae"), ("SA", "ar", "sa"),
)  # fmt: skip
# Card schemes' published IIN prefixes and lengths (Visa, Mastercard 5- and 2-series, Amex, Discover, JCB,
# Diners, UnionPay, Maestro incl. 12-digit, Mir, RuPay, Verve, Elo, Troy, Dankort, UATP).
_CARD_SCHEMES = (
    (("4",), (13, 16, 19)), (("51", "53", "55"), (16,)), (("2221", "2500", "2720"), (16,)),
    (("34", "37"), (15,)), (("6011", "65", "644", "649"), (16, 19)), (("3528", "3589"), (16, 19)),
    (("36",), (14,)), (("300", "305"), (16,)), (("62",), (16, 17, 18, 19)),
    (("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"), (12, 13, 15, 16, 19)),
    (("2200", "2204"), (16,)), (("508", "60", "81", "82"), (16,)), (("506099", "650002"), (16, 19)),
    (("636368", "438935"), (16,)), (("9792",), (16,)), (("5019",), (16,)), (("1",), (15,)),
)  # fmt: skip
# BBAN structures from the SWIFT IBAN registry: n digits, a upper-case letters, c alphanumerics.
_BBAN = {
    "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n", "IT": "1a10n12c", "BE": "12n",
    "AT": "16n", "CH": "5n12c", "PL": "24n", "PT": "21n", "SE": "20n", "DK": "14n", "NO": "11n", "FI": "14n",
    "IE": "4a14n", "LU": "3n13c", "CZ": "20n", "HU": "24n", "RO": "4a16c", "GR": "7n16c", "TR": "5n1n16c",
    "SA": "2n18c", "AE": "19n", "IL": "19n", "BR": "23n1a1c", "UA": "6n19c", "HR": "17n", "SI": "15n",
    "MT": "4a5n18c", "CY": "8n16c", "LT": "16n", "LV": "4a13c", "EE": "16n", "IS": "22n", "QA": "4a21c",
}  # fmt: skip
_FIRST = ("Seán", "Zoë", "José", "Anne-Marie", "Jürgen", "Chloé", "Björn", "Łukasz", "Siobhán", "Nuño", "Ana", "Li")
_LAST = ("O'Brien", "Müller", "García-López", "Nowak", "d'Alembert", "Ó Súilleabháin", "Dubois", "Øvergaard",
         "van der Berg", "Kowalczyk", "Nguyễn", "Smith-Jones")  # fmt: skip
_LOCALS = ("jane.doe", "j.smith+news", "müller.jürgen", "josé.garcía", "info", "o.brien_77", "用户", "anna-lena")
_DOMAINS = (
    "example.com",
    "mail.example.de",
    "correo.example.es",
    "münchen.example",
    "例子.example",
    "xn--bcher-kva.example",
)
_FILLER = (
    "Bestellnummer 4417-2291-0831 vom 14.03.2026 über 1.234,56 €.",
    "Commande n° 2024-000123-45 expédiée le 14/03/2026.",
    "ISBN 978-84-376-0494-7 y ISBN 9783161484100 agotados.",
    "Version 10.4.2.1 released; build 10.0.19045 ran 1,234 tests.",
    "Tracking 1Z999AA10123456784, parcel 3.2 kg, 45 x 30 cm.",
    "Open 08:30–17:00, Mon–Fri; closed 24.12.–26.12.",
    "Prices from ¥12,800 or $1,299.00 (approx. 1.199,00 €).",
    "Office at 48.8566, 2.3522, postcode 75008 or SW1A 1AA.",
    "Chapter 12, pages 100-200 and 300-400; section 4.1.2.3.",
    "Invoice INV-2026-00042 total 18,50 EUR, ref 00 12 34 56.",
)
_NBSP, _THIN, _EN = "\u00a0", "\u2009", "\u2013"
_TEMPLATES = {
    "email": ("Contact {} for details.", "E-Mail: {}", "Écrivez à {} svp.", "Correo: {}", "mail me at {} ok"),
    "phone": ("Call {} after 6pm.", "Tel.: {}", "Appelez le {}.", "Llámenos al {}", "电话 {}", "Fax {} (office)."),
    "credit_card": ("Paid with card {} yesterday.", "Kartennummer: {}", "carte {} expirée", "tarjeta {}"),
    "iban": ("Wire to IBAN {} please.", "IBAN: {}", "Konto {} bei der Bank", "virement sur {}"),
    "ip_address": ("Login from {} was blocked.", "Server IP: {}", "requests from {} spiked", "host {} down"),
    "us_ssn": ("SSN {} on file.", "Social Security number: {}", "SSN: {}"),
    "person": ("Signed, Dr. {}.", "Please ask Ms. {} first.", "my name is {} and I agree", "Photo by {}",
               "{} said the shop opens at nine.", "Dear {},"),
}  # fmt: skip


@dataclass
class HintedCorpus:
    texts: list[str]
    spans: list[list[tuple[str, int, int]]]
    hints: list[tuple[str, str]]  # per text: (page URL, language)


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, n))


def _phone(region: str, rng: np.random.Generator) -> str:
    kind = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)[int(rng.integers(0, 2))]
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    national = str(example.national_number)
    for _ in range(50):
        candidate = phonenumbers.parse(f"+{example.country_code}{national[:-4]}{_digits(rng, 4)}", None)
        if phonenumbers.is_valid_number(candidate):
            example = candidate
            break
    style = int(rng.integers(0, 10))
    formats = phonenumbers.PhoneNumberFormat
    fmt = formats.NATIONAL if style < 5 else (formats.INTERNATIONAL if style < 9 else formats.E164)
    value = phonenumbers.format_number(example, fmt)
    spelling = int(rng.integers(0, 8))  # how the page typed the separators
    if spelling == 1:
        value = value.replace(" ", "-")
    elif spelling == 2:
        value = value.replace(" ", ".") if "(" not in value else value
    elif spelling == 3:
        value = value.replace(" ", _NBSP)
    elif spelling == 4:
        value = value.replace(" ", _THIN).replace("-", _EN)
    elif spelling == 5 and rng.random() < 0.5:
        value = value.translate({ord(d): chr(ord(d) + 0xFEE0) for d in string.digits})
    elif spelling == 6:
        value += f" ext. {int(rng.integers(10, 999))}"
    return value


def _card(rng: np.random.Generator) -> str:
    prefixes, lengths = _CARD_SCHEMES[int(rng.integers(0, len(_CARD_SCHEMES)))]
    prefix, length = prefixes[int(rng.integers(0, len(prefixes)))], lengths[int(rng.integers(0, len(lengths)))]
    body = prefix + _digits(rng, length - len(prefix) - 1)
    check = next(c for c in string.digits if _luhn_ok(body + c))
    number = body + check
    sep = ("", " ", "-", _NBSP, ".", " ")[int(rng.integers(0, 6))]
    if not sep:
        return number
    groups = (
        [number[:4], number[4:10], number[10:]] if length == 15 else [number[i : i + 4] for i in range(0, length, 4)]
    )
    return sep.join(groups)


def _luhn_ok(digits: str) -> bool:
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(map(int, reversed(digits))))
    return total % 10 == 0


def _iban(rng: np.random.Generator) -> str:
    country = list(_BBAN)[int(rng.integers(0, len(_BBAN)))]
    bban, spec, count = "", _BBAN[country], ""
    for char in spec:
        if char.isdigit():
            count += char
            continue
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}[char]
        bban += "".join(pool[int(k)] for k in rng.integers(0, len(pool), int(count)))
        count = ""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    style = int(rng.integers(0, 5))
    grouped = [compact[i : i + 4] for i in range(0, len(compact), 4)]
    value = (" ".join(grouped), compact, "-".join(grouped), _NBSP.join(grouped), " ".join(grouped))[style]
    return value.lower() if rng.random() < 0.25 else value


def _email(rng: np.random.Generator) -> str:
    local, domain = _LOCALS[int(rng.integers(0, len(_LOCALS)))], _DOMAINS[int(rng.integers(0, len(_DOMAINS)))]
    style = int(rng.integers(0, 10))
    if style == 1:
        return f"{local} (at) {domain.replace('.', ' (dot) ')}"
    if style == 2:
        return f"{local}[at]{domain}"
    if style == 3:
        return f"{local}%40{domain}"
    if style == 4:
        return f"{local[:2]}\u200b{local[2:]}@{domain}"
    if style == 5:
        return f"{local}@{domain}".upper() if local.isascii() and domain.isascii() else f"{local}@{domain}"
    return f"{local}@{domain}"


def _ip(rng: np.random.Generator) -> str:
    words = [f"{int(x):x}" for x in rng.integers(0, 65536, 8)]
    v4 = ".".join(str(int(x)) for x in rng.integers(1, 255, 4))
    style = int(rng.integers(0, 7))
    return (
        v4,
        ":".join(words),
        ":".join(words[:3]) + "::" + words[7],
        "::ffff:" + v4,
        "fe80::" + ":".join(words[4:6]) + "%eth0",
        ":".join(w.zfill(4).upper() for w in words),
        v4,
    )[style]


def _ssn(rng: np.random.Generator) -> str:
    area, group, serial = int(rng.integers(1, 666)), int(rng.integers(1, 100)), int(rng.integers(1, 10000))
    sep = ("-", "-", " ", "")[int(rng.integers(0, 4))]
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def hinted_value(entity: str, region: str, rng: np.random.Generator) -> str:
    if entity == "phone":
        return _phone(region, rng)
    if entity == "person":
        return f"{_FIRST[int(rng.integers(0, len(_FIRST)))]} {_LAST[int(rng.integers(0, len(_LAST)))]}"
    return {"email": _email, "credit_card": _card, "iban": _iban, "ip_address": _ip, "us_ssn": _ssn}[entity](rng)


def make_hinted_corpus(n_texts: int, seed: int = 1) -> HintedCorpus:
    """`n_texts` documents, each from one country's page, mixing look-alike filler with 0-3 planted values."""
    rng = np.random.default_rng(seed)
    entities = tuple(_TEMPLATES)
    texts, spans, hints = [], [], []
    for _ in range(n_texts):
        region, lang, tld = REGIONS[int(rng.integers(0, len(REGIONS)))]
        parts, found, length = [], [], 0
        for _ in range(int(rng.integers(3, 9))):
            if rng.random() < 0.35:
                entity = entities[int(rng.integers(0, len(entities)))]
                value = hinted_value(entity, region, rng)
                template = _TEMPLATES[entity][int(rng.integers(0, len(_TEMPLATES[entity])))]
                sentence = template.format(value)
                offset = length + template.index("{}")
                found.append((entity, offset, offset + len(value)))
            else:
                sentence = _FILLER[int(rng.integers(0, len(_FILLER)))]
            parts.append(sentence)
            length += len(sentence) + 1
        texts.append(" ".join(parts))
        spans.append(found)
        hints.append((f"https://shop.example.{tld}/page", lang))
    return HintedCorpus(texts, spans, hints)
