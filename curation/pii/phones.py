"""Phone numbers: phonenumbers' matcher over the regions a page suggests (config, language, TLD), look-alikes out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlsplit

import phonenumbers

from curation.pii.spans import PiiSpan

# A phone number needs at least 7 digits; only such runs are handed to phonenumbers (its matcher is the slow
# part). Runs may hold several numbers ("415.555.0134 / 415 555 0137") and an extension ("ext. 204", "x204").
_CANDIDATE = re.compile(
    r"(?:\+|\(|\b)\d[\d \t().\-/]{5,40}\d\)?(?:\s*(?:ext\.?|extension|x|#)\s*\d{1,6}\b)?", re.IGNORECASE
)
# Words that make a number something else; a phone word ("tel", "fax") before them wins. From the
# look-alikes in tests/curation/pii_values.py and bench/pii_formats.py: order, invoice and customer numbers
# (English, German compounds, French, Spanish), ISBNs, versions, references.
_NOT_PHONE_CONTEXT = re.compile(
    r"(?i)(?:\b(?:order|invoice|isbn(?:-1[03])?|issn|sku|item|tracking|serial|ref(?:erence)?|ticket|case|part|"
    r"model|version|build|patent|doi|account|policy|receipt|transaction|booking|id|commande|facture|r[ée]f[ée]rence|"
    r"pedido|factura|n[°º]|nr)|(?:bestell|rechnungs?|auftrags?|kunden|artikel|vorgangs)\w*)"
    r"\W{0,6}(?:no\.?|number|nummer|#)?\W{0,3}$"
)
# Digits glued to a code's letters ("INV-2026-00042", "SKU/4155550134") are that code's serial.
_CODE_PREFIX = re.compile(r"[A-Za-z]{2,}[-_/#]$")
# "24.12.-26.12.", "14.03.": day-month dates, which some regions' plans would accept as numbers. A dotted
# phone number ("06.12.34.56.78") has a digit after the second dot.
_DOTTED_DATE = re.compile(r"(?<!\d)\d{1,2}\.\d{1,2}\.(?!\d)")
# A whole run that is a calendar date with a four-digit year ("14.03.2026", "03/14/2026", "2026-03-14"):
# phonenumbers' matcher rejects these too, but only after one full pass per region (8 regions: 8 passes).
_FULL_DATE = re.compile(r"(\d{1,2})([./])(\d{1,2})\2((?:19|20)\d{2})|((?:19|20)\d{2})([./\-])(\d{1,2})\6(\d{1,2})")
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:order|invoice|isbn(?:-1[03])?|issn|sku|item|tracking|serial|ref(?:erence)?|ticket|case|part|"
    r"model|version|build|patent|doi|account|policy|receipt|transaction|booking|id)\b\W{0,6}(?:no\.?|number|#)?\W{0,3}$"
)
_PHONE_CONTEXT = re.compile(r"(?i)\b(?:tel|phone|call|fax|mobile|cell|whatsapp|contact|ring|dial)")
# Phone regions per language (ISO 639-1 -> ISO 3166 regions where it is a main language, most populous first).
LANGUAGE_REGIONS: dict[str, tuple[str, ...]] = {
    "en": ("US", "GB", "CA", "AU", "IN", "IE", "NZ", "ZA"), "de": ("DE", "AT", "CH"), "fr": ("FR", "BE", "CH", "CA"),
    "es": ("ES", "MX", "AR", "CO", "CL", "PE"), "pt": ("BR", "PT"), "it": ("IT", "CH"), "nl": ("NL", "BE"),
    "sv": ("SE",), "da": ("DK",), "no": ("NO",), "nb": ("NO",), "fi": ("FI",), "pl": ("PL",), "cs": ("CZ",),
    "sk": ("SK",), "hu": ("HU",), "ro": ("RO",), "bg": ("BG",), "el": ("GR", "CY"), "tr": ("TR",),
    "ru": ("RU", "BY", "KZ"), "uk": ("UA",), "ja": ("JP",), "zh": ("CN", "TW", "HK", "SG"), "ko": ("KR",),
    "hi": ("IN",), "ar": ("SA", "EG", "AE", "MA"), "he": ("IL",), "th": ("TH",), "vi": ("VN",), "id": ("ID",),
    "ms": ("MY",), "fa": ("IR",), "hr": ("HR",), "sr": ("RS",), "sl": ("SI",), "et": ("EE",), "lv": ("LV",),
    "lt": ("LT",),
}  # fmt: skip
# Country-code TLDs that are not their ISO 3166 code.
_TLD_REGIONS = {"uk": "GB", "eu": "", "su": "RU", "ac": "", "tv": "", "io": "", "co": "CO", "me": "ME"}
# The fewest digits of a run handed to the matcher (see _CANDIDATE).
MIN_DIGITS = 7
# The most regions tried per text: each costs one matcher pass over the number-like runs.
MAX_REGIONS = 8


def regions_from_hints(
    configured: Sequence[str], lang: str | None = None, urls: Sequence[str | None] = ()
) -> list[str]:
    """Phone regions to try for one record: configured first, then its URLs' country TLDs, then its language's."""
    regions = [r.upper() for r in configured]
    for url in urls:
        host = urlsplit(url or "").hostname or ""
        tld = host.rsplit(".", 1)[-1].lower() if "." in host else ""
        region = _TLD_REGIONS.get(tld, tld.upper()) if len(tld) == 2 else ""
        if region:
            regions.append(region)
    if lang:
        regions += LANGUAGE_REGIONS.get(lang.split("-")[0].lower(), ())
    known = phonenumbers.SUPPORTED_REGIONS
    return list(dict.fromkeys(r for r in regions if r in known))[:MAX_REGIONS]


@lru_cache(maxsize=256)
def _region_shape(region: str) -> tuple[str, int]:
    """(national trunk prefix, fewest digits of a valid national number) from phonenumbers' metadata."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        raise ValueError(f"unknown phone region {region!r}")
    return metadata.national_prefix or "", min(metadata.general_desc.possible_length or (1,))


def is_full_date(run: str) -> bool:
    """Whether `run` is wholly a date with a four-digit year, day and month in range (either order)."""
    match = _FULL_DATE.fullmatch(run)
    if match is None:
        return False
    if match.group(1) is not None:
        a, b = int(match.group(1)), int(match.group(3))
        return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12
    month, day = int(match.group(7)), int(match.group(8))
    return 1 <= month <= 12 and 1 <= day <= 31


def _regions_to_try(window: str, regions: Sequence[str]) -> list[str]:
    """Regions under which `window` could hold a valid number; parsing is the slow part, so skip the rest.

    A lone "+<country code>" number parses under any region (the first is enough); a national number needs
    at least the region's shortest valid length in digits. Trunk prefixes are not required: numbers are
    commonly printed without them ("(11) 91234-5678" in Brazil, "98765 43210" in India).
    """
    digits = sum(c.isdigit() for c in window)
    if window.lstrip("( ").startswith("+") and "/" not in window and "," not in window:
        return list(regions[:1])
    return [region for region in regions if digits >= _region_shape(region)[1]]


def find_phones(text: str, regions: Sequence[str], taken: Sequence[PiiSpan] = ()) -> list[PiiSpan]:
    """Numbers phonenumbers finds valid (Leniency.VALID: a real number plan, not a date, time or price)."""
    spans = []
    for candidate in _CANDIDATE.finditer(text):
        start, end = candidate.span()
        # Runs already claimed by a card, IBAN, SSN or IP need no phone parse.
        if any(start < t.end and t.start < end for t in taken) or is_full_date(candidate.group()):
            continue
        # Fewer than 7 digits ("100-200", "48.8566"): no number the matcher accepts here (the regex counts
        # characters, not digits).
        if sum(c.isdigit() for c in candidate.group()) < MIN_DIGITS:
            continue
        before = text[max(0, start - 30) : start]
        if _CODE_PREFIX.search(before) or (_NOT_PHONE_CONTEXT.search(before) and not _PHONE_CONTEXT.search(before)):
            continue
        # One character either side, so the matcher's own checks (a letter or currency sign next to the
        # digits means no phone) still see the neighbours.
        left = max(0, start - 1)
        window = text[left : end + 1]
        digits = {k for k in range(start, end) if text[k].isdigit()}
        for region in _regions_to_try(candidate.group(), regions):
            for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID):
                if _DOTTED_DATE.search(window, match.start, match.end + 1):
                    continue
                spans.append(PiiSpan("phone", left + match.start, left + match.end))
                digits -= set(range(left + match.start, left + match.end))
            # Once every digit of the run is inside a number found, later regions can only find the same.
            if not digits:
                break
    return spans
