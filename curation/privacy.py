"""The scrub stage: redact PII in text fields, strip image metadata and blur faces; record identity never changes."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import phonenumbers
import pyarrow as pa
from PIL import Image
from pydantic import BaseModel, Field

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import Stage, StageOutput, split_by_reason
from curation.images import PILLOW_MAX_PIXELS, ImageDecodeError, decode_image, orient

SCRUB_VERSION = "1"
Entity = Literal["email", "phone", "credit_card"]
ENTITIES: tuple[Entity, ...] = ("email", "credit_card", "phone")  # also the priority when spans overlap
PLACEHOLDERS: dict[str, str] = {"email": "[EMAIL]", "phone": "[PHONE]", "credit_card": "[CREDIT_CARD]"}
TEXT_FIELDS = ("text", "title", "alt_text", "caption")
DROP_REASONS = ("scrub_failed",)

# Pragmatic address shape (local@domain.tld), not full RFC 5322: quoted local parts and IP literals are
# missed, which web pages practically never show.
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Payment card numbers are 13-19 digits (ISO/IEC 7812), written plain or in groups split by spaces/dashes.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
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


def _find_cards(text: str) -> list[PiiSpan]:
    spans = []
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            spans.append(PiiSpan("credit_card", match.start(), match.end()))
    return spans


def _find_phones(text: str, regions: Sequence[str]) -> list[PiiSpan]:
    spans = []
    for region in regions:
        # A number written with "+" and its country code is found under any region; national formats
        # ("(020) 7946 0958") only under their own region, hence the list.
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            spans.append(PiiSpan("phone", match.start, match.end))
    return spans


def find_pii(
    text: str, region: str = "US", extra_regions: Sequence[str] = (), entities: Sequence[str] = ENTITIES
) -> list[PiiSpan]:
    """Emails, phone numbers (valid in `region` or `extra_regions`, or written with +country code) and
    Luhn-valid card numbers in `text`, sorted by start; overlapping finds keep email > credit_card > phone.
    """
    found: list[PiiSpan] = []
    if "email" in entities:
        found += [PiiSpan("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    if "credit_card" in entities:
        found += _find_cards(text)
    if "phone" in entities:
        found += _find_phones(text, [region, *extra_regions])
    priority = {entity: rank for rank, entity in enumerate(ENTITIES)}
    found.sort(key=lambda s: (priority[s.entity], s.start, -(s.end - s.start)))
    chosen: list[PiiSpan] = []
    for span in found:
        if all(span.end <= other.start or span.start >= other.end for other in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def redact(text: str, spans: Sequence[PiiSpan]) -> str:
    """`text` with each (non-overlapping) span replaced by its typed placeholder, e.g. "[EMAIL]"."""
    out = text
    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        out = out[: span.start] + PLACEHOLDERS[span.entity] + out[span.end :]
    return out


class ScrubConfig(BaseModel):
    """What the scrub stage looks for and how hard it blurs."""

    entities: list[Entity] = Field(default_factory=lambda: list(ENTITIES), description="PII types to redact.")
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
    jpeg_quality: int = Field(
        95,
        ge=1,
        le=100,
        description="Quality for re-encoded JPEGs: 95 is the top of Pillow's recommended range; higher only "
        "grows files, lower adds a second round of visible compression loss to training images.",
    )


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
    return ScrubbedImage(buffer.getvalue(), clean.width, clean.height, mime, len(faces), metadata_removed)


def scrub(table: pa.Table, cfg: ScrubConfig | None = None) -> StageOutput:
    """Redact PII in text, title, alt_text and caption; re-encode every image without metadata, faces blurred.

    Sets pii_counts (entity -> count, nonzero only; an empty map means "scrubbed, nothing found"),
    scrub_version, and for images image/width/height/mime/faces_blurred/exif_stripped (True where EXIF,
    XMP or other metadata was present and removed). record_id never changes. An image whose bytes cannot
    be decoded is dropped as `scrub_failed`; nothing else is dropped. Raises ValueError if `table` has
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

    for i in range(n):
        per_record: Counter[str] = Counter()
        for name in TEXT_FIELDS:
            value = columns[name][i]
            if not value:
                continue
            spans = find_pii(value, cfg.phone_region, cfg.extra_phone_regions, cfg.entities)
            if spans:
                per_record.update(span.entity for span in spans)
                columns[name][i] = redact(value, spans)
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
        "pii_email": totals["email"],
        "pii_phone": totals["phone"],
        "pii_credit_card": totals["credit_card"],
        "faces_blurred": totals["faces_blurred"],
        "exif_stripped": totals["exif_stripped"],
        "images_scrubbed": totals["images_scrubbed"],
        "records_with_pii": records_with_pii,
        "scrub_failed": reasons.count("scrub_failed"),
    }
    return StageOutput(kept=kept, dropped=dropped, counters=counters)


SCRUB = Stage(name="scrub", version=SCRUB_VERSION, apply=scrub)
