"""Text drawn inside images: tesseract's word boxes, grouped into lines, through the text PII detectors.

Tesseract (Debian's `tesseract-ocr`, Apache-2.0, English model in the package) is called as a binary with TSV
output under a time limit: one process per image (`read_words`), or one per batch of images sent as the pages of
an uncompressed multi-page TIFF (`read_words_in_batch`), which reads every page exactly as a process of its own
would but pays tesseract's ~90 ms start (loading its model) once per batch instead of once per image. Each
line's words are joined with single spaces, the text detectors run on that line, and every PII span maps back
to the union box of the words it overlaps. OCR misreads digits ("6011" as "GOq1"), which breaks the checksums
and formats the text detectors rely on while a person still reads the number: `find_misread_numbers` also
marks every long run of digit-like words.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from curation.pii import PiiSpan

TESSERACT = "tesseract"


class OcrUnavailable(RuntimeError):
    """The tesseract binary is missing; OCR was asked for, so scrubbing must not go on silently without it."""


class OcrTimeout(RuntimeError):
    """Tesseract ran past its time limit on one image: its text is unknown, so the image is not safe to keep."""


@dataclass(frozen=True)
class OcrWord:
    """One word tesseract read: its line (block, paragraph, line numbers), text and box (x, y, w, h) in px."""

    line: tuple[int, int, int]
    text: str
    box: tuple[int, int, int, int]


def tesseract_path() -> str:
    path = shutil.which(TESSERACT)
    if path is None:
        raise OcrUnavailable(
            "tesseract not found: install Debian's tesseract-ocr (`make venv` does) or set ScrubConfig.ocr_pii=False"
        )
    return path


def parse_tsv(tsv: str, scale: float = 1.0) -> list[OcrWord]:
    """Word rows (level 5, non-blank text) of tesseract's TSV output, boxes divided by `scale`."""
    return parse_tsv_pages(tsv, [scale])[0]


def parse_tsv_pages(tsv: str, scales: Sequence[float]) -> list[list[OcrWord]]:
    """The words of each page (TSV column page_num, from 1) of a multi-page TSV, boxes divided by that page's
    scale; one list per scale, empty for a page without words."""
    pages: list[list[OcrWord]] = [[] for _ in scales]
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        page = int(cols[1]) - 1
        left, top, width, height = (int(v) for v in cols[6:10])
        box = tuple(round(v / scales[page]) for v in (left, top, width, height))
        pages[page].append(OcrWord((int(cols[2]), int(cols[3]), int(cols[4])), cols[11].strip(), box))  # type: ignore[arg-type]
    return pages


def _reading_copy(rgb: np.ndarray, max_side: int) -> tuple[Image.Image, float]:
    """The image tesseract reads (downscaled to `max_side` at most) and its scale."""
    image = Image.fromarray(rgb)
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    return image, scale


def _run_tesseract(data: bytes, timeout_s: float, languages: str) -> str:
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    command = [tesseract_path(), "stdin", "stdout", "-l", languages, "tsv"]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise OcrTimeout(f"tesseract ran past {timeout_s} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"tesseract failed ({done.returncode}): {done.stderr.decode(errors='replace')[-300:]}")
    return done.stdout.decode("utf-8", errors="replace")


def read_words(rgb: np.ndarray, max_side: int, timeout_s: float, languages: str = "eng") -> list[OcrWord]:
    """Tesseract's words in an RGB (H, W, 3) uint8 image, read on a copy downscaled to `max_side` at most.

    One thread (OMP_THREAD_LIMIT=1): the pipeline runs many images, and tesseract's OpenMP threads only
    contend with each other on a small machine. Raises OcrTimeout past `timeout_s`, OcrUnavailable without
    the binary, RuntimeError if tesseract fails.
    """
    image, scale = _reading_copy(rgb, max_side)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return parse_tsv(_run_tesseract(buffer.getvalue(), timeout_s, languages), scale)


def read_words_in_batch(
    rgbs: Sequence[np.ndarray], max_side: int, timeout_s: float, languages: str = "eng"
) -> list[list[OcrWord] | None]:
    """`read_words` of each RGB (H, W, 3) uint8 image, from one tesseract process for the whole batch; None for an
    image that ran past its own `timeout_s`.

    The batch runs under the sum of its images' limits; a batch past it (or failing) is read again one image at a
    time, so each image still has its own limit and a failure names its own cause. The pages go uncompressed (no
    encoding cost; tesseract reads each page of the TIFF as it reads a single image, results are identical).
    """
    if len(rgbs) <= 1:
        return [_words_or_none(rgb, max_side, timeout_s, languages) for rgb in rgbs]
    copies = [_reading_copy(rgb, max_side) for rgb in rgbs]
    buffer = io.BytesIO()
    copies[0][0].save(buffer, "TIFF", save_all=True, append_images=[c[0] for c in copies[1:]], compression=None)
    try:
        tsv = _run_tesseract(buffer.getvalue(), timeout_s * len(rgbs), languages)
    except (OcrTimeout, RuntimeError):
        return [_words_or_none(rgb, max_side, timeout_s, languages) for rgb in rgbs]
    return list(parse_tsv_pages(tsv, [c[1] for c in copies]))


def _words_or_none(rgb: np.ndarray, max_side: int, timeout_s: float, languages: str) -> list[OcrWord] | None:
    try:
        return read_words(rgb, max_side, timeout_s, languages)
    except OcrTimeout:
        return None


def binarize(rgb: np.ndarray) -> np.ndarray:
    """Black and white RGB copy of an RGB (H, W, 3) uint8 image: a 3x3 Gaussian, then Otsu's global threshold.

    A second read for tesseract: on light-noise backgrounds and low-contrast ink its own thresholding
    misreads digits ("6011 1111" as "GOq1 Tilt" in OpenCV's Hershey font, tests/pipelines/pii_site.py), which
    this copy reads right; on a photo with text over it the raw read stays the better one, so both are read.
    """
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    _, bw = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return np.ascontiguousarray(np.dstack([bw, bw, bw]))


def new_boxes(boxes: np.ndarray, seen: np.ndarray, covered: float = 0.5) -> np.ndarray:
    """The (x, y, w, h) rows of `boxes` of which no row of `seen` covers `covered` of the area or more."""
    keep = []
    for x, y, w, h in boxes:
        overlap = [
            max(0, min(x + w, sx + sw) - max(x, sx)) * max(0, min(y + h, sy + sh) - max(y, sy))
            for sx, sy, sw, sh in seen
        ]
        keep.append(max(overlap, default=0) < covered * max(1, w * h))
    return boxes[np.asarray(keep, dtype=bool)] if len(boxes) else boxes


def lines_of(words: Sequence[OcrWord]) -> list[tuple[str, list[tuple[int, int, OcrWord]]]]:
    """Words grouped by line in reading order: (line text, [(start, end, word)]) with words joined by a space."""
    grouped: dict[tuple[int, int, int], list[OcrWord]] = {}
    for word in words:
        grouped.setdefault(word.line, []).append(word)
    lines = []
    for line_words in grouped.values():
        parts, text = [], ""
        for word in line_words:
            start = len(text) + (1 if text else 0)
            text = f"{text} {word.text}" if text else word.text
            parts.append((start, len(text), word))
        lines.append((text, parts))
    return lines


# Letters tesseract puts for digits (measured on Pillow's and OpenCV's Hershey fonts: "6011" read as "GOq1",
# "5" as "S", "1" as "l"), read back as the digit they stand for, inside a word that holds a real digit.
_LOOKALIKES = str.maketrans("OoDQIl|i!ZzSsGbTBgq", "0000111112255667899")
_NUMBER_WORD = re.compile(r"[+(]*\d[\d.\-‐-―/()]*")  # digits with the separators of phone and card numbers
_WORD = re.compile(r"\S+")
MISREAD_NUMBER_DIGITS = 10


def read_as_number(word: str) -> str | None:
    """`word` with look-alike letters read as digits, if it holds a real digit and is then all digits and
    separators ("GOq1" -> "6091", "S55-2671" -> "555-2671"); None for any other word ("Tel.", "10:30", "$1,234")."""
    if not any(c.isdigit() for c in word):
        return None
    number = word.translate(_LOOKALIKES)
    return number if _NUMBER_WORD.fullmatch(number) else None


def find_misread_numbers(text: str, min_digits: int = MISREAD_NUMBER_DIGITS) -> list[PiiSpan]:
    """Runs of consecutive number words (see `read_as_number`) in an OCR line holding at least `min_digits`
    digits, as spans (entity "credit_card" from 12 digits, else "phone"), with no checksum or format check.

    A misread digit breaks the Luhn sum of a card or the numbering plan of a phone, yet the number stays
    legible to people; in pixels a blur costs little, so long numbers go whole. The default, 10, is the
    length of a national phone number in the NANP and most European plans and below every card (12-19); dates
    (8 digits), times, prices and house numbers stay shorter or are not number words.
    """
    spans: list[PiiSpan] = []
    run: list[tuple[int, int, int]] = []  # (start, end, digits) of the current run's words
    for match in [*_WORD.finditer(text), None]:
        number = read_as_number(match.group()) if match else None
        if number is not None:
            run.append((match.start(), match.end(), sum(c.isdigit() for c in number)))
            continue
        digits = sum(n for _, _, n in run)
        if run and digits >= min_digits:
            spans.append(PiiSpan("credit_card" if digits >= 12 else "phone", run[0][0], run[-1][1]))
        run = []
    return spans


def pii_boxes(words: Sequence[OcrWord], find: Callable[[str], list[PiiSpan]], pad: float = 0.3) -> np.ndarray:
    """Boxes (K, 4) int (x, y, w, h) over the words of each PII span `find` reports in a line, one per span.

    Each box is the union of the span's words, grown by `pad` x its height on every side (ascenders,
    descenders and the gaps between words); words only touched by a span count whole.
    """
    boxes = []
    for text, parts in lines_of(words):
        for span in find(text):
            hit = [w.box for start, end, w in parts if start < span.end and span.start < end]
            if not hit:
                continue
            x0, y0 = min(b[0] for b in hit), min(b[1] for b in hit)
            x1, y1 = max(b[0] + b[2] for b in hit), max(b[1] + b[3] for b in hit)
            margin = round((y1 - y0) * pad)
            boxes.append((max(0, x0 - margin), max(0, y0 - margin), x1 - x0 + 2 * margin, y1 - y0 + 2 * margin))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
