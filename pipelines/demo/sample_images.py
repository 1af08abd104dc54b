"""The sample site's pictures: the seeded class drawings, the planted face, GPS EXIF, encoding, and the face check."""

from __future__ import annotations

import functools
import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, TiffImagePlugin

# Three textures and a scene with none. Measured with a 3-conv CNN at 64x64 trained on 100 labels:
# circles/triangles were confused (71 % test accuracy), so were rings/stripes (76 %).
CLASSES: tuple[str, ...] = ("dots", "stripes", "checks", "sky")
# Face box of skimage's astronaut() as found by OpenCV's haarcascade_frontalface_default
# (x=177, y=66, w=95, h=95, measured); the crop keeps a margin so the cascade still sees a whole face.
_ASTRONAUT_FACE_CROP = (142, 31, 307, 196)
_FACE_SIZE = 110  # px on a ~180 px image: the brief's 90-120 px face, big enough for the cascade


def make_rng(seed: int, *salt: int) -> np.random.Generator:
    """The generator for one seeded draw; the salt keeps each draw's stream independent of the others."""
    return np.random.default_rng([seed, *salt])


def _pick_colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    r, g, b = rng.integers(lo, hi, size=3)
    return int(r), int(g), int(b)


def draw_class(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One procedurally drawn picture of class `name`, `size` px square, with colour noise."""
    bg = _pick_colour(rng, 0, 120) if rng.random() < 0.5 else _pick_colour(rng, 140, 256)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    fg = tuple(255 - c for c in bg)
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.array(img)
    if name == "dots":
        for _ in range(int(rng.integers(12, 40))):
            r = int(rng.integers(size // 28, size // 12))
            cx, cy = (int(v) for v in rng.integers(0, size, size=2))
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_pick_colour(rng) if rng.random() < 0.3 else fg)
        arr = np.array(img)
    elif name == "stripes":
        period = int(rng.integers(10, 26))
        angle = float(rng.uniform(0, math.pi))
        dx, dy = math.cos(angle), math.sin(angle)
        band = ((xx * dx + yy * dy) // (period / 2)).astype(int) % 2 == 1
        arr[band] = fg
    elif name == "checks":
        cell = int(rng.integers(12, 30))
        ox, oy = (int(v) for v in rng.integers(0, cell, size=2))
        on = (((xx + ox) // cell + (yy + oy) // cell) % 2) == 1
        arr[on] = fg
    elif name == "sky":
        # a smooth vertical gradient, a sun and a flat ground band: no repeated edges, unlike the textures
        top, bottom = np.array(_pick_colour(rng)), np.array(_pick_colour(rng))
        t = (yy / max(size - 1, 1))[..., None]
        arr = (top * (1 - t) + bottom * t).astype(np.uint8)
        horizon = int(rng.integers(size // 2, 5 * size // 6))
        arr[horizon:] = _pick_colour(rng, 0, 140)
        r = int(rng.integers(size // 10, size // 5))
        cx, cy = int(rng.integers(r, size - r)), int(rng.integers(r, max(r + 1, horizon - r)))
        arr[np.hypot(xx - cx, yy - cy) < r] = _pick_colour(rng, 180, 256)
    else:
        raise ValueError(f"unknown class {name!r}")
    arr = arr.astype(np.int16) + rng.normal(0, 12, size=arr.shape).astype(np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))
    return img


# A multi-label picture's answer is its classes joined by this, in sorted order (corpus.releases.multilabel's form).
SET_SEPARATOR = ";"


def draw_picture(name: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A picture of class `name`, or for a label set ("checks;dots", SET_SEPARATOR-joined) a 2x2 grid whose
    quadrants each show one of the set's classes, every class at least once (drawn at quadrant size)."""
    names = name.split(SET_SEPARATOR)
    if len(names) == 1:
        return draw_class(name, size, rng)
    half = size // 2
    cells = [*names, *(names[int(i)] for i in rng.integers(len(names), size=4 - len(names)))]
    cells = [cells[int(i)] for i in rng.permutation(4)]
    img = Image.new("RGB", (2 * half, 2 * half))
    for q, cell in enumerate(cells):
        img.paste(draw_class(cell, half, rng), ((q % 2) * half, (q // 2) * half))
    return img


def choose_label_set(rng: np.random.Generator) -> str:
    """A seeded label set of 1 to 3 of CLASSES (sorted, SET_SEPARATOR-joined): a multi-label picture's truth."""
    k = int(rng.integers(1, 4))
    return SET_SEPARATOR.join(sorted(CLASSES[int(i)] for i in rng.choice(len(CLASSES), size=k, replace=False)))


def draw_gallery_picture(
    name: str, rng: np.random.Generator, fmt: str, *, exif: Image.Exif | None = None, face: bool = False
) -> tuple[bytes, Image.Image]:
    """One draw of a gallery picture of class (or label set) `name` at a random size, with the face pasted on
    if `face`.

    Returns the encoded bytes and the drawn image (the near duplicates are resampled from it).
    """
    size = int(rng.integers(128, 193))
    img = draw_picture(name, size, rng)
    if face:
        img = img.resize((max(size, 170), max(size, 170)))
        ox, oy = (int(v) for v in rng.integers(0, img.width - _FACE_SIZE + 1, size=2))
        img.paste(_load_face_patch(), (ox, oy))
    return encode(img, fmt, quality=int(rng.integers(85, 96)), exif=exif), img


def encode(img: Image.Image, fmt: str, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kwargs: dict[str, Any] = {"quality": quality}
        if exif is not None:
            kwargs["exif"] = exif
        img.save(buf, "JPEG", **kwargs)
    else:
        img.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def build_gps_exif(lat: float, lon: float) -> Image.Exif:
    """EXIF with a GPS IFD (tag 0x8825) holding `lat`, `lon` as degrees/minutes/seconds rationals."""

    def dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
        value = abs(value)
        deg = int(value)
        minutes = int((value - deg) * 60)
        seconds = round(((value - deg) * 60 - minutes) * 60 * 100)
        return (
            TiffImagePlugin.IFDRational(deg, 1),
            TiffImagePlugin.IFDRational(minutes, 1),
            TiffImagePlugin.IFDRational(seconds, 100),
        )

    exif = Image.Exif()
    exif[0x010F] = "FlywheelCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(lon)
    return exif


@functools.cache
def _load_face_cascade() -> Any:
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def has_face(data: bytes, min_neighbors: int = 3) -> bool:
    """Whether OpenCV's frontal-face Haar cascade fires on encoded image bytes.

    The default minNeighbors=3 is looser than the usual 5 (OpenCV's tutorial value), so a picture kept
    as face-free stays so with some margin.
    """
    import cv2

    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return len(_load_face_cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=min_neighbors)) > 0


@functools.cache
def _load_face_patch() -> Image.Image:
    from skimage import data

    face = Image.fromarray(data.astronaut()).crop(_ASTRONAUT_FACE_CROP)
    return face.resize((_FACE_SIZE, _FACE_SIZE), Image.Resampling.LANCZOS)
