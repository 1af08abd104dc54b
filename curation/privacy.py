"""The scrub stage: redact PII in text fields, strip image metadata and blur faces; record identity never changes."""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import phonenumbers
import pyarrow as pa
from PIL import Image
from pydantic import BaseModel, Field, SecretStr, model_validator

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import Stage, StageOutput, split_by_reason
from curation.images import PILLOW_MAX_PIXELS, ImageDecodeError, decode_image, orient

SCRUB_VERSION = "2"
Entity = Literal["email", "phone", "credit_card", "iban", "ip_address", "us_ssn", "secret", "person"]
# Also the priority when spans overlap: the more specific pattern wins (a card number is not a phone number).
ENTITIES: tuple[Entity, ...] = ("secret", "email", "iban", "credit_card", "us_ssn", "ip_address", "phone", "person")
Policy = Literal["redact", "mask", "hash", "drop"]
PLACEHOLDERS: dict[str, str] = {entity: f"[{entity.upper()}]" for entity in ENTITIES}
TEXT_FIELDS = ("text", "title", "alt_text", "caption", "context_text")
DROP_REASONS = ("scrub_failed", "contains_pii", "face_dominant")

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
_HAAR_FACE = "haarcascade_frontalface_default.xml"


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


class ScrubConfig(BaseModel):
    """What the scrub stage looks for and how hard it blurs."""

    entities: list[Entity] = Field(default_factory=lambda: list(ENTITIES), description="PII types to look for.")
    policies: dict[Entity, Policy] = Field(
        default_factory=dict,
        description='What to do per entity: "redact" (typed placeholder, the default), "mask" (keep separators '
        'and, for numbers, the last 4), "hash" (keyed token: the same value gives the same token, so joins '
        'still work) or "drop" (the whole record is dropped as contains_pii, its text redacted).',
    )
    hash_key: SecretStr = Field(
        SecretStr(""),
        description="Key of the hash policy (HMAC-SHA256); required when a policy is hash. Reports show it masked.",
    )
    phone_region: str = Field("US", description="Default region for phone numbers written without +country code.")
    extra_phone_regions: list[str] = Field(
        default_factory=list,
        description='More regions whose national formats to accept, e.g. ["GB"] finds "(020) 7946 0958".',
    )
    max_pixels: int = Field(PILLOW_MAX_PIXELS, ge=1, description="Decompression-bomb guard (Pillow's default).")
    blur_faces: bool = Field(True, description="Blur faces found by OpenCV's frontal-face Haar cascade.")
    face_scale_factor: float = Field(
        1.1, gt=1.0, description="detectMultiScale scaleFactor; 1.1 is OpenCV's documented default."
    )
    face_min_neighbors: int = Field(
        3,
        ge=0,
        description="detectMultiScale minNeighbors; 3 is OpenCV's documented default. Lower than the 5 many "
        "tutorials use on purpose: a false blur costs little, a missed face leaks identity.",
    )
    face_min_size: int = Field(
        24,
        ge=1,
        description="Smallest face side in px; 24 is the cascade's training window, which is what "
        "detectMultiScale's default minSize=(0, 0) amounts to.",
    )
    face_detect_max_side: int = Field(
        1024,
        ge=64,
        description="Detect on a copy downscaled to this longest side, to bound cost (detection is ~0.15 s on a "
        "512x384 image on this 2-core machine, and grows with area); faces under face_min_size after the "
        "downscale are missed.",
    )
    face_box_margin: float = Field(
        0.2, ge=0.0, description="Enlarge each face box by this fraction per side: Haar boxes cut off hair and chin."
    )
    blur_sigma_fraction: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="Gaussian sigma as a fraction of the enlarged face box side. Measured on skimage's astronaut "
        "(tests/curation): from 0.1 the cascade no longer finds the face and Laplacian variance in the box falls "
        "from ~900 to ~2; 0.2 leaves margin for larger or higher-contrast faces.",
    )
    max_face_fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Drop images where one detected face box covers more than this fraction of the frame "
        "(close-up portraits, where blurring leaves nothing of use) as face_dominant. None keeps them.",
    )
    jpeg_quality: int = Field(
        95,
        ge=1,
        le=100,
        description="Quality for re-encoded JPEGs: 95 is the top of Pillow's recommended range; higher only "
        "grows files, lower adds a second round of visible compression loss to training images.",
    )

    @model_validator(mode="after")
    def _hash_needs_key(self) -> ScrubConfig:
        if "hash" in self.policies.values() and not self.hash_key.get_secret_value():
            raise ValueError("a hash policy needs hash_key")
        return self


@lru_cache(maxsize=1)
def _face_cascade() -> cv2.CascadeClassifier:
    """OpenCV's bundled frontal-face cascade, loaded once per process."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + _HAAR_FACE)
    if cascade.empty():
        raise RuntimeError(f"could not load {_HAAR_FACE} from {cv2.data.haarcascades}")
    return cascade


def detect_faces(rgb: np.ndarray, cfg: ScrubConfig) -> np.ndarray:
    """Face boxes (K, 4) int as (x, y, w, h) in an RGB (H, W, 3) uint8 image."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, cfg.face_detect_max_side / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    faces = _face_cascade().detectMultiScale(
        cv2.equalizeHist(gray),
        scaleFactor=cfg.face_scale_factor,
        minNeighbors=cfg.face_min_neighbors,
        minSize=(cfg.face_min_size, cfg.face_min_size),
    )
    boxes = np.asarray(faces, dtype=np.float64).reshape(-1, 4) / scale
    return np.round(boxes).astype(np.int64)


def blur_boxes(rgb: np.ndarray, boxes: np.ndarray, cfg: ScrubConfig) -> np.ndarray:
    """A copy of `rgb` (H, W, C) with a strong Gaussian blur over each (x, y, w, h) box, enlarged by the margin."""
    out = rgb.copy()
    height, width = rgb.shape[:2]
    for x, y, w, h in boxes:
        dx, dy = int(w * cfg.face_box_margin), int(h * cfg.face_box_margin)
        x0, y0 = max(0, x - dx), max(0, y - dy)
        x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
        sigma = max(x1 - x0, y1 - y0) * cfg.blur_sigma_fraction
        # ksize (0, 0): OpenCV derives the kernel from sigma (+-3 sigma for 8-bit images).
        out[y0:y1, x0:x1] = cv2.GaussianBlur(out[y0:y1, x0:x1], (0, 0), sigma)
    return out


def _has_metadata(image: Image.Image) -> bool:
    """True if the file carries metadata beyond pixels and colour profile (EXIF, XMP, text chunks, comments)."""
    info_keys = set(image.info) - {"icc_profile", "dpi", "jfif", "jfif_version", "jfif_unit", "jfif_density"}
    info_keys -= {"progressive", "progression", "gamma", "transparency", "interlace", "aspect", "adobe"}
    info_keys -= {"adobe_transform", "srgb", "duration", "loop", "background", "version", "extension"}
    return len(image.getexif()) > 0 or bool(info_keys)


@dataclass(frozen=True)
class ScrubbedImage:
    """A re-encoded image: bytes without metadata, its size after orientation, what was done."""

    data: bytes
    width: int
    height: int
    mime: str
    faces: int
    metadata_removed: bool
    largest_face_fraction: float = 0.0


def scrub_image(data: bytes, cfg: ScrubConfig) -> ScrubbedImage:
    """Re-encode an image from its pixels: EXIF orientation applied, faces blurred, all metadata but ICC gone.

    JPEG and WebP become JPEG at `cfg.jpeg_quality`; every other format becomes PNG (lossless). Only the
    first frame of an animation is kept. Raises ImageDecodeError (a ValueError) for unusable bytes.
    """
    decoded = decode_image(data, cfg.max_pixels)
    metadata_removed = _has_metadata(decoded)
    oriented = orient(decoded)
    lossy = decoded.format in ("JPEG", "WEBP", "MPO")
    has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info)
    mode = "RGBA" if has_alpha and not lossy else "RGB"
    pixels = np.asarray(oriented.convert(mode))
    faces = np.zeros((0, 4), dtype=np.int64)
    if cfg.blur_faces:
        faces = detect_faces(np.ascontiguousarray(pixels[..., :3]), cfg)
        if len(faces):
            pixels = blur_boxes(pixels, faces, cfg)
    clean = Image.fromarray(pixels)
    # A CMYK profile would mis-describe the RGB pixels written below.
    icc = None if decoded.mode == "CMYK" else decoded.info.get("icc_profile")
    buffer = io.BytesIO()
    # ICC is kept: it is colour calibration, not personal data, and dropping it shifts colours.
    if lossy:
        clean.save(buffer, "JPEG", quality=cfg.jpeg_quality, icc_profile=icc)
        mime = "image/jpeg"
    else:
        clean.save(buffer, "PNG", icc_profile=icc)
        mime = "image/png"
    largest = float((faces[:, 2] * faces[:, 3]).max()) / (clean.width * clean.height) if len(faces) else 0.0
    return ScrubbedImage(buffer.getvalue(), clean.width, clean.height, mime, len(faces), metadata_removed, largest)


def scrub(table: pa.Table, cfg: ScrubConfig | None = None) -> StageOutput:
    """Rewrite PII in text, title, alt_text and caption by policy; re-encode images without metadata, faces blurred.

    Sets pii_counts (entity -> count, nonzero only; an empty map means "scrubbed, nothing found"),
    scrub_version, and for images image/width/height/mime/faces_blurred/exif_stripped (True where EXIF,
    XMP or other metadata was present and removed). record_id never changes. An image whose bytes cannot
    be decoded is dropped as `scrub_failed`; a record holding an entity whose policy is "drop" as
    `contains_pii` (its text rewritten all the same); with `max_face_fraction`, close-up faces as
    `face_dominant`. Nothing else is dropped. Raises ValueError if `table` has
    columns outside the record schema. No text of a record reaches counters, reports or logs.
    """
    cfg = cfg or ScrubConfig()
    table = conform(table, RECORD_SCHEMA)
    n = table.num_rows
    kinds = table.column("kind").to_pylist()
    columns = {name: table.column(name).to_pylist() for name in TEXT_FIELDS}
    image = table.column("image").to_pylist()
    width = table.column("width").to_pylist()
    height = table.column("height").to_pylist()
    mime = table.column("mime").to_pylist()
    faces = table.column("faces_blurred").to_pylist()
    stripped = table.column("exif_stripped").to_pylist()
    pii_counts: list[list[tuple[str, int]]] = []
    reasons: list[str | None] = [None] * n
    totals: Counter[str] = Counter()
    records_with_pii = 0
    key = cfg.hash_key.get_secret_value().encode()

    for i in range(n):
        per_record: Counter[str] = Counter()
        for name in TEXT_FIELDS:
            value = columns[name][i]
            if not value:
                continue
            spans = find_pii(value, cfg.phone_region, cfg.extra_phone_regions, cfg.entities)
            if spans:
                per_record.update(span.entity for span in spans)
                columns[name][i] = redact(value, spans, cfg.policies, key)
                if any(cfg.policies.get(span.entity) == "drop" for span in spans):
                    reasons[i] = "contains_pii"
        pii_counts.append(sorted(per_record.items()))
        totals.update(per_record)
        records_with_pii += bool(per_record)
        if kinds[i] != "image":
            continue
        try:
            result = scrub_image(image[i], cfg)
        except ImageDecodeError:
            reasons[i] = "scrub_failed"
            continue
        if cfg.max_face_fraction is not None and result.largest_face_fraction > cfg.max_face_fraction:
            reasons[i] = reasons[i] or "face_dominant"
        image[i], width[i], height[i], mime[i] = result.data, result.width, result.height, result.mime
        faces[i], stripped[i] = result.faces, result.metadata_removed
        totals["faces_blurred"] += result.faces
        totals["exif_stripped"] += result.metadata_removed
        totals["images_scrubbed"] += 1

    new_columns = {
        **columns,
        "image": image,
        "width": width,
        "height": height,
        "mime": mime,
        "faces_blurred": faces,
        "exif_stripped": stripped,
        "pii_counts": pii_counts,
        "scrub_version": [SCRUB_VERSION] * n,
    }
    updated = table
    for name, values in new_columns.items():
        field = RECORD_SCHEMA.field(name)
        updated = updated.set_column(updated.schema.get_field_index(name), field, pa.array(values, type=field.type))
    kept, dropped = split_by_reason(updated, reasons)
    counters = {
        **{f"pii_{entity}": totals[entity] for entity in ENTITIES},
        "faces_blurred": totals["faces_blurred"],
        "exif_stripped": totals["exif_stripped"],
        "images_scrubbed": totals["images_scrubbed"],
        "records_with_pii": records_with_pii,
        "scrub_failed": reasons.count("scrub_failed"),
        "contains_pii": reasons.count("contains_pii"),
        "face_dominant": reasons.count("face_dominant"),
    }
    return StageOutput(kept=kept, dropped=dropped, counters=counters)


SCRUB = Stage(name="scrub", version=SCRUB_VERSION, apply=scrub)
