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

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import Stage, StageOutput, split_by_reason
from curation.images import ImageDecodeError, decode_image, orient
from curation.ocr import (
    OcrWord,
    binarize,
    find_misread_numbers,
    new_boxes,
    pii_boxes,
    read_words,
    read_words_in_batch,
)
from curation.pii import (
    ENTITIES,
    PiiSpan,
    find_pii,
    redact,
    regions_from_hints,
    scrub_url,
    scrub_urls_in_text,
)
from curation.scrub_config import ScrubConfig

SCRUB_VERSION = "5"
TEXT_FIELDS = ("text", "title", "alt_text", "caption", "context_text")
URL_FIELDS = ("url", "page_url")
DROP_REASONS = ("scrub_failed", "contains_pii", "face_dominant")
_HAAR_FACE = "haarcascade_frontalface_default.xml"
_HAAR_EYE = "haarcascade_eye.xml"


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


def _pii_finder(cfg: ScrubConfig, regions: Sequence[str] | None) -> Callable[[str], list[PiiSpan]]:
    """The text detectors OCR lines go through: `find_pii` in the record's phone regions, plus the long numbers
    OCR may have misread (`_with_misread_numbers`) while phone or credit_card is looked for."""
    regions = list(regions or [cfg.phone_region, *cfg.extra_phone_regions])
    find = partial(find_pii, region=regions[0], extra_regions=regions[1:], entities=cfg.entities)
    if cfg.ocr_number_digits and {"phone", "credit_card"} & set(cfg.entities):
        find = partial(_with_misread_numbers, find, cfg.ocr_number_digits)
    return find


def ocr_pii_boxes(rgb: np.ndarray, cfg: ScrubConfig, regions: Sequence[str] | None = None) -> np.ndarray:
    """Boxes (K, 4) (x, y, w, h) over text in an RGB image that holds PII, one per span (see curation.ocr)."""
    if min(rgb.shape[:2]) < cfg.ocr_min_side:
        return np.zeros((0, 4), dtype=np.int64)
    finder = _pii_finder(cfg, regions)
    boxes = pii_boxes(read_words(rgb, cfg.ocr_max_side, cfg.ocr_timeout_s, cfg.ocr_languages), finder)
    if cfg.ocr_binarized_read:
        words = read_words(binarize(rgb), cfg.ocr_max_side, cfg.ocr_timeout_s, cfg.ocr_languages)
        boxes = _with_binarized_boxes(boxes, words, finder)
    return boxes


def ocr_pii_boxes_in_batch(
    rgbs: Sequence[np.ndarray], cfg: ScrubConfig, regions: Sequence[Sequence[str] | None]
) -> list[np.ndarray | None]:
    """`ocr_pii_boxes` of each RGB image (with its own phone `regions`), read by one tesseract process for the
    batch (curation.ocr.read_words_in_batch); None for an image whose OCR ran past `cfg.ocr_timeout_s`."""
    out: list[np.ndarray | None] = [np.zeros((0, 4), dtype=np.int64) for _ in rgbs]
    legible = [k for k, rgb in enumerate(rgbs) if min(rgb.shape[:2]) >= cfg.ocr_min_side]
    # Each image's binarized copy is the page after it in the same TIFF: one tesseract start for both reads, and
    # each read keeps its own time limit, as two processes would.
    step = 2 if cfg.ocr_binarized_read else 1
    pages = [copy for k in legible for copy in ((rgbs[k], binarize(rgbs[k])) if step == 2 else (rgbs[k],))]
    read = read_words_in_batch(pages, cfg.ocr_max_side, cfg.ocr_timeout_s, cfg.ocr_languages)
    for n, k in enumerate(legible):
        reads = read[n * step : (n + 1) * step]
        if any(words is None for words in reads):
            out[k] = None
            continue
        finder = _pii_finder(cfg, regions[k])
        boxes = pii_boxes(reads[0], finder)
        out[k] = _with_binarized_boxes(boxes, reads[1], finder) if step == 2 else boxes
    return out


def _with_binarized_boxes(
    boxes: np.ndarray, words: list[OcrWord], finder: Callable[[str], list[PiiSpan]]
) -> np.ndarray:
    """`boxes` of the raw read plus the PII boxes of the binarized read's `words` that no raw box covers."""
    return np.concatenate([boxes, new_boxes(pii_boxes(words, finder), boxes)])


def _with_misread_numbers(find: Callable[[str], list[PiiSpan]], min_digits: int, text: str) -> list[PiiSpan]:
    """The spans of `find` plus the long number runs OCR may have misread that no span of `find` covers."""
    found = find(text)
    misread = find_misread_numbers(text, min_digits)
    return found + [m for m in misread if not any(f.start <= m.start and m.end <= f.end for f in found)]


@dataclass(frozen=True)
class OpenedImage:
    """An image decoded for scrubbing, its faces found, before OCR: RGB(A) pixels (H, W, C) after orientation."""

    pixels: np.ndarray
    faces: np.ndarray
    lossy: bool
    metadata_removed: bool
    icc: bytes | None


def open_for_scrub(data: bytes, cfg: ScrubConfig) -> OpenedImage:
    """Decode and orient an image and find its faces (the part of `scrub_image` before OCR); raises as it does."""
    decoded = decode_image(data, cfg.max_pixels)
    oriented = orient(decoded)
    lossy = decoded.format in ("JPEG", "WEBP", "MPO")
    has_alpha = oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info)
    pixels = np.asarray(oriented.convert("RGBA" if has_alpha and not lossy else "RGB"))
    faces = np.zeros((0, 4), dtype=np.int64)
    if cfg.blur_faces:
        faces = detect_faces(np.ascontiguousarray(pixels[..., :3]), cfg)
    # A CMYK profile would mis-describe the RGB pixels written.
    icc = None if decoded.mode == "CMYK" else decoded.info.get("icc_profile")
    return OpenedImage(pixels, faces, lossy, _has_metadata(decoded), icc)


def finish_scrub(opened: OpenedImage, text_boxes: np.ndarray, cfg: ScrubConfig) -> ScrubbedImage:
    """Blur the faces and the PII text boxes of an opened image and re-encode it (the rest of `scrub_image`)."""
    pixels, faces = opened.pixels, opened.faces
    if len(faces):
        pixels = blur_boxes(pixels, faces, cfg)
    if len(text_boxes):
        # The text boxes come already padded, so no face margin.
        pixels = blur_boxes(pixels, text_boxes, cfg.model_copy(update={"face_box_margin": 0.0}))
    clean = Image.fromarray(pixels)
    buffer = io.BytesIO()
    # ICC is kept: it is colour calibration, not personal data, and dropping it shifts colours.
    if opened.lossy:
        clean.save(buffer, "JPEG", quality=cfg.jpeg_quality, icc_profile=opened.icc)
        mime = "image/jpeg"
    else:
        clean.save(buffer, "PNG", icc_profile=opened.icc)
        mime = "image/png"
    largest = float((faces[:, 2] * faces[:, 3]).max()) / (clean.width * clean.height) if len(faces) else 0.0
    return ScrubbedImage(
        buffer.getvalue(),
        clean.width,
        clean.height,
        mime,
        len(faces),
        opened.metadata_removed,
        largest,
        len(text_boxes),
    )


def scrub_image(data: bytes, cfg: ScrubConfig, regions: Sequence[str] | None = None) -> ScrubbedImage:
    """Re-encode an image from its pixels: EXIF orientation applied, faces and text holding PII blurred, all
    metadata but ICC gone.

    JPEG and WebP become JPEG at `cfg.jpeg_quality`; every other format becomes PNG (lossless). Only the
    first frame of an animation is kept. `regions`: phone regions for text read in the image. Raises
    ImageDecodeError (a ValueError) for unusable bytes, curation.ocr.OcrTimeout when tesseract runs too long.
    """
    opened = open_for_scrub(data, cfg)
    text_boxes = np.zeros((0, 4), dtype=np.int64)
    if cfg.ocr_pii:
        # Read on the pixels before any face blur.
        text_boxes = ocr_pii_boxes(np.ascontiguousarray(opened.pixels[..., :3]), cfg, regions)
    return finish_scrub(opened, text_boxes, cfg)


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


# Images scrubbed (and read by one tesseract process) together: at most this many, holding at most this many bytes
# of decoded pixels at once. 32 pays tesseract's start on 1/32 of the images (both reads of each go to that one
# process); 64 MiB bounds what a batch holds (the binarized copies and the TIFF add to it while it is read).
SCRUB_BATCH_IMAGES = 32
SCRUB_BATCH_BYTES = 64 * 2**20


def _store_scrubbed(
    columns: dict[str, list], i: int, result: ScrubbedImage, cfg: ScrubConfig, totals: Counter
) -> str | None:
    """Put row `i`'s scrubbed image into `columns` (IMAGE_FIELDS lists) and count it; its drop reason, if any."""
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


def _scrub_image_batch(
    columns: dict[str, list], rows: list[int], cfg: ScrubConfig, totals: Counter[str], regions: dict[int, list[str]]
) -> dict[int, str | None]:
    """Scrub the images of `rows` in `columns` in place, their OCR in one tesseract process; row -> drop reason."""
    reasons: dict[int, str | None] = {}
    opened: dict[int, OpenedImage] = {}
    for i in rows:
        try:
            opened[i] = open_for_scrub(columns["image"][i], cfg)
        except ImageDecodeError:
            reasons[i] = "scrub_failed"
    boxes: list[np.ndarray | None] = [np.zeros((0, 4), dtype=np.int64)] * len(opened)
    if cfg.ocr_pii:
        rgbs = [np.ascontiguousarray(o.pixels[..., :3]) for o in opened.values()]
        boxes = ocr_pii_boxes_in_batch(rgbs, cfg, [regions[i] for i in opened])
    for (i, one), text_boxes in zip(opened.items(), boxes, strict=True):
        if text_boxes is None:
            totals["ocr_timeouts"] += 1
            reasons[i] = "scrub_failed"
        else:
            reasons[i] = _store_scrubbed(columns, i, finish_scrub(one, text_boxes, cfg), cfg, totals)
    return reasons


def _image_batches(columns: dict[str, list], rows: list[int]) -> list[list[int]]:
    """`rows` cut into batches of at most SCRUB_BATCH_IMAGES images and about SCRUB_BATCH_BYTES of pixels
    (estimated as 4 bytes per pixel from each image's width and height, 2 MB when unknown)."""
    batches: list[list[int]] = [[]]
    held = 0
    for i in rows:
        width, height = columns["width"][i], columns["height"][i]
        size = 4 * width * height if width and height else 2 * 2**20
        if batches[-1] and (len(batches[-1]) >= SCRUB_BATCH_IMAGES or held + size > SCRUB_BATCH_BYTES):
            batches.append([])
            held = 0
        batches[-1].append(i)
        held += size
    return [b for b in batches if b]


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
    regions: dict[int, list[str]] = {}
    for i in range(n):
        regions[i] = phone_regions(cfg, langs[i], [columns["url"][i], columns["page_url"][i]])
        fields, found, drop = scrub_text_fields({name: columns[name][i] for name in TEXT_FIELDS}, cfg, key, regions[i])
        urls, in_urls, url_drop = scrub_url_fields(
            {name: columns[name][i] for name in URL_FIELDS}, cfg, key, regions[i]
        )
        found.update(in_urls)
        for name, value in (fields | urls).items():
            columns[name][i] = value
        pii_counts.append(sorted(found.items()))
        totals.update(found)
        records_with_pii += bool(found)
        reasons[i] = "contains_pii" if drop or url_drop else None
    for batch in _image_batches(columns, [i for i in range(n) if kinds[i] == "image"]):
        for i, image_reason in _scrub_image_batch(columns, batch, cfg, totals, regions).items():
            # scrub_failed wins (the image is unusable); contains_pii comes before face_dominant.
            reasons[i] = image_reason if image_reason == "scrub_failed" else (reasons[i] or image_reason)
    columns |= {"pii_counts": pii_counts, "scrub_version": [SCRUB_VERSION] * n}
    updated = table
    for name, values in columns.items():
        field = RECORD_SCHEMA.field(name)
        updated = updated.set_column(updated.schema.get_field_index(name), field, pa.array(values, type=field.type))
    kept, dropped = split_by_reason(updated, reasons)
    return StageOutput(kept=kept, dropped=dropped, counters=count_scrub(totals, reasons, records_with_pii))


SCRUB = Stage(name="scrub", version=SCRUB_VERSION, apply=scrub, drop_reasons=frozenset(DROP_REASONS))
