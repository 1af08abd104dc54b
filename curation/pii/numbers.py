"""Numbers with check digits: payment cards (Luhn + issuer ranges), IBANs (mod 97) and US social security numbers."""

from __future__ import annotations

import re

from curation.pii.spans import PiiSpan

# A run of 12-19 digits (ISO/IEC 7812 allows 8-19; no scheme issues fewer than 12), one separator at most
# between digits, not preceded by "+" (an international phone number). Up to 24 digits are taken so that
# a card followed by another group can be cut back to the card.
_CARD = re.compile(r"(?<![\d+])(?<!\d[ .\-])\d(?:[ .\-]?\d){11,23}(?!\d|[ .\-]\d)")
_CARD_SEPARATORS = re.compile(r"[ .\-]")
# Issuer identification ranges and lengths per scheme, from the schemes' published tables as collected in
# Wikipedia's "Payment card number" (IIN ranges, 2024): (first prefix, last prefix, lengths).
_IIN_RANGES: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (4, 4, (13, 16, 19)),  # Visa, Visa Electron
    (51, 55, (16,)), (2221, 2720, (16,)),  # Mastercard
    (34, 34, (15,)), (37, 37, (15,)),  # American Express
    (300, 305, (14, 15, 16, 17, 18, 19)), (3095, 3095, (14, 15, 16, 17, 18, 19)),  # Diners Club
    (36, 36, (14, 15, 16, 17, 18, 19)), (38, 39, (14, 15, 16, 17, 18, 19)),  # Diners Club International
    (6011, 6011, (16, 17, 18, 19)), (644, 649, (16, 17, 18, 19)), (65, 65, (16, 17, 18, 19)),  # Discover
    (3528, 3589, (16, 17, 18, 19)),  # JCB
    (62, 62, (16, 17, 18, 19)), (81, 81, (16, 17, 18, 19)),  # UnionPay
    (50, 50, tuple(range(12, 20))), (56, 69, tuple(range(12, 20))),  # Maestro (12-19 digits)
    (2200, 2204, (16, 17, 18, 19)),  # Mir
    (60, 60, (16,)), (508, 508, (16,)), (353, 353, (16,)), (356, 356, (16,)), (82, 82, (16,)),  # RuPay
    (9792, 9792, (16,)),  # Troy
    (1, 1, (15,)),  # UATP
)  # fmt: skip

# IBAN lengths per country, from the SWIFT IBAN registry (release 98, 2024).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
# Where an IBAN may start: country letters and check digits (any case), not inside a word.
_IBAN_START = re.compile(r"(?i)(?<![A-Z0-9])([A-Z]{2})(\d{2})(?=[ \-]?[A-Z0-9])")
# An SSN's digits (SSA rules: area never 000, 666 or 9xx; group never 00; serial never 0000), any separator.
_SSN = re.compile(r"(?<![\d\-])(?!000|666|9\d\d)(\d{3})([ \-.]?)(?!00)\d{2}\2(?!0000)\d{4}(?![\d\-]|\.\d)")
# Undashed or space-grouped nine digits are an SSN only when the words before it say so.
_SSN_CONTEXT = re.compile(r"(?i)(?:\bssn|\bss#|social[ -]security(?:[ -](?:number|no\.?|#))?|\bsocial\b)\W{0,12}$")


def luhn_valid(digits: str) -> bool:
    """True if the digit string passes the Luhn check (ISO/IEC 7812-1), as every real card number does."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def issuer_valid(digits: str) -> bool:
    """True if some card scheme issues numbers under this prefix (see _IIN_RANGES). Lengths are held to the
    scheme's only for 12 digits (Maestro's shortest): longer runs of an issued prefix count at any length
    13-19, as PCI scanners treat them, since schemes add lengths over time (Visa 19, Mastercard 2-series)."""
    for low, high, lengths in _IIN_RANGES:
        width = len(str(low))
        if low <= int(digits[:width]) <= high and (len(digits) > 12 or len(digits) in lengths):
            return True
    return False


def card_valid(digits: str) -> bool:
    """A plausible payment card number: 12-19 digits, an issued prefix (and length, for 12), the Luhn check."""
    return 12 <= len(digits) <= 19 and issuer_valid(digits) and luhn_valid(digits)


def _grouped_like_a_card(run: str) -> bool:
    """Printed cards group digits in fours (Amex and Diners 4-6-5, 4-6-4): every group but the last has 4 or
    more, which keeps dotted IPv4 addresses and phone numbers grouped 3-3-4 out."""
    groups = _CARD_SEPARATORS.split(run)
    return all(len(group) >= 4 for group in groups[:-1])


def find_cards(text: str) -> list[PiiSpan]:
    spans = []
    for match in _CARD.finditer(text):
        run = match.group()
        if not _grouped_like_a_card(run):
            continue
        if card_valid(_CARD_SEPARATORS.sub("", run)):
            spans.append(PiiSpan("credit_card", match.start(), match.end()))
            continue
        # A card followed by another group ("4111 1111 1111 1111 2027"): try the run cut at each separator.
        for cut in sorted((m.start() for m in _CARD_SEPARATORS.finditer(run)), reverse=True):
            if card_valid(_CARD_SEPARATORS.sub("", run[:cut])):
                spans.append(PiiSpan("credit_card", match.start(), match.start() + cut))
                break
    return spans


def iban_valid(iban: str) -> bool:
    """True if `iban` (any case, spaces or dashes allowed) has its country's length and passes ISO 7064 mod 97-10."""
    compact = re.sub(r"[ \-]", "", iban).upper()
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is None or len(compact) != expected or not compact.isalnum() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def find_ibans(text: str) -> list[PiiSpan]:
    """IBANs in any case and grouping: from country and check digits, the country's length of alphanumerics."""
    spans, resume = [], 0
    for match in _IBAN_START.finditer(text):
        if match.start() < resume:
            continue
        expected = IBAN_LENGTHS.get(match.group(1).upper())
        if expected is None:
            continue
        end, count, previous_separator = match.start(), 0, False
        while end < len(text) and count < expected:
            char = text[end]
            if char.isascii() and char.isalnum():
                count, previous_separator = count + 1, False
            elif char in " -" and not previous_separator and count >= 4:
                previous_separator = True
            else:
                break
            end += 1
        # The IBAN must end where its alphanumerics end: "DE89...3000 and" ends at the space.
        runs_on = end < len(text) and text[end].isascii() and text[end].isalnum()
        if count == expected and not runs_on and iban_valid(text[match.start() : end]):
            spans.append(PiiSpan("iban", match.start(), end))
            resume = end
    return spans


def find_ssns(text: str) -> list[PiiSpan]:
    spans = []
    for match in _SSN.finditer(text):
        if match.group(2) == "-" or _SSN_CONTEXT.search(text, max(0, match.start() - 40), match.start()):
            spans.append(PiiSpan("us_ssn", match.start(), match.end()))
    return spans
