"""The scrub stage: redact PII in text fields, strip image metadata and blur faces; record identity never changes."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import cv2
import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import BaseModel, Field, SecretStr, model_validator

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import Stage, StageOutput, split_by_reason
from curation.images import PILLOW_MAX_PIXELS, ImageDecodeError, decode_image, orient
from curation.ocr import (
    MISREAD_NUMBER_DIGITS,
    OcrTimeout,
    binarize,
    find_misread_numbers,
    new_boxes,
    pii_boxes,
    read_words,
)
from curation.pii import (
    ENTITIES,
    Entity,
    PiiSpan,
    Policy,
    find_pii,
    redact,
    regions_from_hints,
    scrub_url,
    scrub_urls_in_text,
)

SCRUB_VERSION = "5"
TEXT_FIELDS = ("text", "title", "alt_text", "caption", "context_text")
URL_FIELDS = ("url", "page_url")
DROP_REASONS = ("scrub_failed", "contains_pii", "face_dominant")
_HAAR_FACE = "haarcascade_frontalface_default.xml"
_HAAR_EYE = "haarcascade_eye.xml"


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
    phone_region_hints: bool = Field(
        True,
        description="Also try the regions a record suggests: its URLs' country TLDs (.fr -> FR) and its "
        "language's countries (de -> DE, AT, CH); at most curation.pii.phones.MAX_REGIONS in all.",
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
    face_verify: bool = Field(
        True,
        description="Keep a cascade box only if OpenCV's eye cascade finds an eye in its upper 60 %, or at least "
        "face_skin_fraction of its centre is skin-coloured, or the image has no colour (where skin cannot be "
        "told). Measured (bench/faces.py): boxes on 200 demo textures 4 -> 1; planted faces 100/100 -> 100/100; "
        "skimage's LFW faces (grey) 99/100 -> 99/100, 93/100 with the eye check alone.",
    )
    face_skin_fraction: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Share of the box's centre in the YCrCb skin range (Cr 133-173, Cb 77-127, Chai & Ngan) that "
        "keeps a box without eyes; planted faces measure 1.0, texture boxes 0.0-0.38 but one skin-coloured 1.0.",
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
    ocr_pii: bool = Field(
        True,
        description="Read text drawn inside images with tesseract (Debian's tesseract-ocr) and blur the words of "
        "every PII span the text detectors find in a line, like faces. Scrubbing raises if the binary is missing.",
    )
    ocr_min_side: int = Field(
        16, ge=1, description="Skip OCR on images whose shorter side is under this many px (no legible line fits)."
    )
    ocr_max_side: int = Field(
        2000,
        ge=64,
        description="Read on a copy downscaled to this longest side, to bound cost; tesseract reads text from "
        "about 10 px high, so a 4000 px scan keeps body text legible at 2000.",
    )
    ocr_timeout_s: float = Field(
        20.0,
        gt=0.0,
        description="Per-image limit on tesseract (~0.1-0.4 s per image here); an image past it is dropped as "
        "scrub_failed (its text is unknown) and counted in ocr_timeouts.",
    )
    ocr_binarized_read: bool = Field(
        True,
        description="Read each image a second time binarized (3x3 Gaussian, Otsu; curation.ocr.binarize) and blur "
        "the PII of both reads: on noisy light backgrounds and thin fonts tesseract's own thresholding misreads "
        "digits that this read gets right (tests/curation/test_ocr.py). Measured 0.33 -> 0.56 s per image (30 "
        "demo pictures and 4 drawn signs, 2 loaded cores); no extra box on the demo pictures.",
    )
    ocr_number_digits: int | None = Field(
        MISREAD_NUMBER_DIGITS,
        ge=1,
        description="Also blur every run of number words read in an image holding at least this many digits, with "
        "no checksum or numbering-plan check (curation.ocr.find_misread_numbers): OCR misreads digits, which "
        "breaks those checks while the number stays legible. Only while phone or credit_card is looked for; "
        "None turns it off.",
    )
    ocr_languages: str = Field(
        "eng", description="Tesseract -l value; each language needs its tesseract-ocr-* package."
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


@lru_cache(maxsize=2)
def _cascade(name: str) -> cv2.CascadeClassifier:
    """One of OpenCV's bundled Haar cascades, loaded once per process."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"could not load {name} from {cv2.data.haarcascades}")
    return cascade


def _face_cascade() -> cv2.CascadeClassifier:
    return _cascade(_HAAR_FACE)


def _eye_cascade() -> cv2.CascadeClassifier:
    return _cascade(_HAAR_EYE)


def looks_like_face(rgb: np.ndarray, box: np.ndarray, cfg: ScrubConfig) -> bool:
    """Whether a cascade box in an RGB image holds an eye, enough skin colour, or the image has no colour."""
    x, y, w, h = (int(v) for v in box)
    crop = np.ascontiguousarray(rgb[y : y + h, x : x + w])
    if crop.size == 0:
        return True
    gray = cv2.cvtColor(np.ascontiguousarray(crop[: h * 6 // 10]), cv2.COLOR_RGB2GRAY)
    if w > 240:  # eyes are found as well at 240 px a face; bounds the cost on large faces
        gray = cv2.resize(gray, (240, max(1, gray.shape[0] * 240 // w)), interpolation=cv2.INTER_AREA)
    eye_side = max(6, min(w, 240) // 10)
    if len(_eye_cascade().detectMultiScale(gray, 1.1, 3, minSize=(eye_side, eye_side))):
        return True
    centre = crop[h // 5 : 4 * h // 5, w // 5 : 4 * w // 5].astype(np.int16)
    if np.abs(np.diff(centre, axis=-1)).max(initial=0) <= 8:
        return True  # grey (or nearly): skin colour cannot be told, so the eye check alone must not decide
    ycc = cv2.cvtColor(np.ascontiguousarray(centre.astype(np.uint8)), cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    skin = (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)
    return float(skin.mean()) >= cfg.face_skin_fraction


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
    boxes = np.round(np.asarray(faces, dtype=np.float64).reshape(-1, 4) / scale).astype(np.int64)
    if cfg.face_verify:
        boxes = np.asarray([b for b in boxes if looks_like_face(rgb, b, cfg)], dtype=np.int64).reshape(-1, 4)
    return boxes


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
    ocr_pii: int = 0


def ocr_pii_boxes(rgb: np.ndarray, cfg: ScrubConfig, regions: Sequence[str] | None = None) -> np.ndarray:
    """Boxes (K, 4) (x, y, w, h) over text in an RGB image that holds PII, one per span (see curation.ocr)."""
    if min(rgb.shape[:2]) < cfg.ocr_min_side:
        return np.zeros((0, 4), dtype=np.int64)
    regions = list(regions or [cfg.phone_region, *cfg.extra_phone_regions])
    find = partial(find_pii, region=regions[0], extra_regions=regions[1:], entities=cfg.entities)
    if cfg.ocr_number_digits and {"phone", "credit_card"} & set(cfg.entities):
        find = partial(_with_misread_numbers, find, cfg.ocr_number_digits)
    boxes = pii_boxes(read_words(rgb, cfg.ocr_max_side, cfg.ocr_timeout_s, cfg.ocr_languages), find)
    if cfg.ocr_binarized_read:
        words = read_words(binarize(rgb), cfg.ocr_max_side, cfg.ocr_timeout_s, cfg.ocr_languages)
        boxes = np.concatenate([boxes, new_boxes(pii_boxes(words, find), boxes)])
    return boxes


def _with_misread_numbers(find: Callable[[str], list[PiiSpan]], min_digits: int, text: str) -> list[PiiSpan]:
    """The spans of `find` plus the long number runs OCR may have misread that no span of `find` covers."""
    found = find(text)
    misread = find_misread_numbers(text, min_digits)
    return found + [m for m in misread if not any(f.start <= m.start and m.end <= f.end for f in found)]


def scrub_image(data: bytes, cfg: ScrubConfig, regions: Sequence[str] | None = None) -> ScrubbedImage:
    """Re-encode an image from its pixels: EXIF orientation applied, faces and text holding PII blurred, all
    metadata but ICC gone.

    JPEG and WebP become JPEG at `cfg.jpeg_quality`; every other format becomes PNG (lossless). Only the
    first frame of an animation is kept. `regions`: phone regions for text read in the image. Raises
    ImageDecodeError (a ValueError) for unusable bytes, curation.ocr.OcrTimeout when tesseract runs too long.
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
    text_boxes = np.zeros((0, 4), dtype=np.int64)
    if cfg.ocr_pii:
        # Read on the pixels before any face blur; the boxes come already padded, so no face margin.
        text_boxes = ocr_pii_boxes(np.ascontiguousarray(pixels[..., :3]), cfg, regions)
    if len(faces):
        pixels = blur_boxes(pixels, faces, cfg)
    if len(text_boxes):
        pixels = blur_boxes(pixels, text_boxes, cfg.model_copy(update={"face_box_margin": 0.0}))
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
    return ScrubbedImage(
        buffer.getvalue(), clean.width, clean.height, mime, len(faces), metadata_removed, largest, len(text_boxes)
    )


# The image columns scrub rewrites (beside TEXT_FIELDS, pii_counts and scrub_version).
IMAGE_FIELDS = ("image", "width", "height", "mime", "faces_blurred", "exif_stripped")


def phone_regions(cfg: ScrubConfig, lang: str | None = None, urls: Sequence[str | None] = ()) -> list[str]:
    """The phone regions tried for one record: the configured ones, then (with hints on) its TLDs' and language's."""
    configured = [cfg.phone_region, *cfg.extra_phone_regions]
    return regions_from_hints(configured, lang, urls) if cfg.phone_region_hints else configured


def scrub_text_fields(
    fields: dict[str, str | None], cfg: ScrubConfig, key: bytes, regions: Sequence[str] | None = None
) -> tuple[dict[str, str | None], Counter[str], bool]:
    """One record's text fields with PII rewritten by policy, the entities found in them, and whether one of
    those has the "drop" policy. URLs inside the text go through `scrub_url` first (query values, path
    segments). `regions`: phone regions to try (default: the configured ones)."""
    out, found = dict(fields), Counter[str]()
    regions = list(regions or [cfg.phone_region, *cfg.extra_phone_regions])
    find = partial(find_pii, region=regions[0], extra_regions=regions[1:], entities=cfg.entities)
    for name, value in fields.items():
        if not value:
            continue
        value, in_urls = scrub_urls_in_text(value, find, cfg.entities, cfg.policies, key)
        spans = find(value)
        found.update(in_urls)
        found.update(span.entity for span in spans)
        out[name] = redact(value, spans, cfg.policies, key) if spans else value
    return out, found, any(cfg.policies.get(entity) == "drop" for entity in found)


def scrub_url_fields(
    urls: dict[str, str | None], cfg: ScrubConfig, key: bytes, regions: Sequence[str] | None = None
) -> tuple[dict[str, str | None], Counter[str], bool]:
    """One record's URL columns through `scrub_url`, like `scrub_text_fields`. The crawler's own state
    (crawlers/state.py) keeps the URLs as fetched for recrawling; the pool keeps only these."""
    out, found = dict(urls), Counter[str]()
    regions = list(regions or [cfg.phone_region, *cfg.extra_phone_regions])
    find = partial(find_pii, region=regions[0], extra_regions=regions[1:], entities=cfg.entities)
    for name, value in urls.items():
        if value:
            out[name], counts = scrub_url(value, find, cfg.entities, cfg.policies, key)
            found.update(counts)
    return out, found, any(cfg.policies.get(entity) == "drop" for entity in found)


def _scrub_image_row(
    columns: dict[str, list], i: int, cfg: ScrubConfig, totals: Counter[str], regions: Sequence[str] | None = None
) -> str | None:
    """Re-encode row `i`'s image in `columns` (IMAGE_FIELDS lists) in place; its drop reason, if any."""
    try:
        result = scrub_image(columns["image"][i], cfg, regions)
    except ImageDecodeError:
        return "scrub_failed"
    except OcrTimeout:
        totals["ocr_timeouts"] += 1
        return "scrub_failed"
    columns["image"][i], columns["width"][i], columns["height"][i] = result.data, result.width, result.height
    columns["mime"][i] = result.mime
    columns["faces_blurred"][i], columns["exif_stripped"][i] = result.faces, result.metadata_removed
    totals["faces_blurred"] += result.faces
    totals["exif_stripped"] += result.metadata_removed
    totals["ocr_pii_blurred"] += result.ocr_pii
    totals["images_scrubbed"] += 1
    if cfg.max_face_fraction is not None and result.largest_face_fraction > cfg.max_face_fraction:
        return "face_dominant"
    return None


def count_scrub(totals: Counter[str], reasons: list[str | None], records_with_pii: int) -> dict[str, int]:
    """The scrub report's counters (entity and image totals, drops per reason); never any record's text."""
    return {
        **{f"pii_{entity}": totals[entity] for entity in ENTITIES},
        "faces_blurred": totals["faces_blurred"],
        "exif_stripped": totals["exif_stripped"],
        "images_scrubbed": totals["images_scrubbed"],
        "ocr_pii_blurred": totals["ocr_pii_blurred"],
        "ocr_timeouts": totals["ocr_timeouts"],
        "records_with_pii": records_with_pii,
        **{reason: reasons.count(reason) for reason in DROP_REASONS},
    }


def scrub(table: pa.Table, cfg: ScrubConfig | None = None) -> StageOutput:
    """Rewrite PII in text, title, alt_text, caption, context_text, url and page_url by policy; re-encode images
    without metadata, faces and text holding PII (read by OCR) blurred.

    Sets pii_counts (entity -> count, nonzero only; an empty map means "scrubbed, nothing found"),
    scrub_version, and for images image/width/height/mime/faces_blurred/exif_stripped (True where EXIF,
    XMP or other metadata was present and removed). record_id never changes. An image whose bytes cannot
    be decoded, or whose OCR runs past `ocr_timeout_s`, is dropped as `scrub_failed`; a record holding an
    entity whose policy is "drop" as `contains_pii` (its text rewritten all the same); with
    `max_face_fraction`, close-up faces as `face_dominant`. Nothing else is dropped. Raises ValueError if
    `table` has columns outside the record schema. No text of a record reaches counters, reports or logs.
    """
    cfg = cfg or ScrubConfig()
    table = conform(table, RECORD_SCHEMA)
    n, kinds = table.num_rows, table.column("kind").to_pylist()
    columns = {name: table.column(name).to_pylist() for name in (*TEXT_FIELDS, *URL_FIELDS, *IMAGE_FIELDS)}
    pii_counts: list[list[tuple[str, int]]] = []
    reasons: list[str | None] = [None] * n
    totals: Counter[str] = Counter()
    records_with_pii = 0
    key = cfg.hash_key.get_secret_value().encode()
    langs = table.column("lang").to_pylist()
    for i in range(n):
        regions = phone_regions(cfg, langs[i], [columns["url"][i], columns["page_url"][i]])
        fields, found, drop = scrub_text_fields({name: columns[name][i] for name in TEXT_FIELDS}, cfg, key, regions)
        urls, in_urls, url_drop = scrub_url_fields({name: columns[name][i] for name in URL_FIELDS}, cfg, key, regions)
        found.update(in_urls)
        drop = drop or url_drop
        for name, value in (fields | urls).items():
            columns[name][i] = value
        pii_counts.append(sorted(found.items()))
        totals.update(found)
        records_with_pii += bool(found)
        image_reason = _scrub_image_row(columns, i, cfg, totals, regions) if kinds[i] == "image" else None
        # scrub_failed wins (the image is unusable); contains_pii comes before face_dominant.
        reasons[i] = "scrub_failed" if image_reason == "scrub_failed" else ("contains_pii" if drop else image_reason)
    columns |= {"pii_counts": pii_counts, "scrub_version": [SCRUB_VERSION] * n}
    updated = table
    for name, values in columns.items():
        field = RECORD_SCHEMA.field(name)
        updated = updated.set_column(updated.schema.get_field_index(name), field, pa.array(values, type=field.type))
    kept, dropped = split_by_reason(updated, reasons)
    return StageOutput(kept=kept, dropped=dropped, counters=count_scrub(totals, reasons, records_with_pii))


SCRUB = Stage(name="scrub", version=SCRUB_VERSION, apply=scrub, drop_reasons=frozenset(DROP_REASONS))
