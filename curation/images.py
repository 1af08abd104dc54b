"""Image decoding: bytes as fetched to a checked, oriented Pillow image, its format and its perceptual hash."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

# Pillow's own default for Image.MAX_IMAGE_PIXELS (~ a 250 MB 24-bit RGB image); above it Pillow warns.
PILLOW_MAX_PIXELS = 89_478_485


# What one image may hold decoded at once, by default: 160 MiB, i.e. 41.9 MP of RGB(A) at Pillow's 4 bytes per
# pixel (an 8K UHD screenshot, 33 MP, fits; a 9400x9400 RGB PNG, 353 MB, does not). Baseline JPEGs decode at a
# reduced DCT scale where a check or a hash is all that is needed, so only their reduced pixels count.
DECODE_BUDGET_BYTES = 160 * 2**20
# Checks and hashes read a working copy whose shorter side is at least this: pHash reads a >= 64 px box
# reduction, the information score a <= 128 px one and the layout signature 32x32, so 64 px loses none of them.
# A baseline JPEG is decoded straight to it by libjpeg's DCT scaling, which still entropy-decodes every block
# (a truncated stream still fails) but skips most of the inverse DCT and colour conversion: on 200-480 px photos
# the decode costs half of a full one (bench/image_dedup.py, `curate_images_per_s`; 256 px before). Images whose
# shorter side is under twice this are measured at full size.
WORK_SIDE = 64
# Rows of the full-size image converted and reduced at once while making a working copy (bounded by this many
# bytes of strip), so no full-size RGB or greyscale copy of a large non-JPEG image is ever made.
_STRIP_BYTES = 4 * 2**20


class ImageDecodeError(ValueError):
    """An image that cannot be used; `reason` is a drop reason (`undecodable`, `truncated` or `too_large`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel of a Pillow image of `mode` in memory (RGB is stored in 4 bytes, like RGBA)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _first_scan(data: bytes) -> int:
    """Offset of a JPEG's first start-of-scan marker, found by walking its marker segments (so the JPEG
    thumbnail inside an EXIF segment is skipped); -1 if there is none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return -1
        if data[pos + 1] == 0xFF:  # fill byte
            pos += 1
        elif data[pos + 1] == 0xDA:
            return pos
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return -1


def _scans_buffered(image: Image.Image, data: bytes) -> bool:
    """True if libjpeg must buffer the whole image's DCT coefficients: progressive, or more than one scan."""
    if "progressive" in image.info or "progression" in image.info:
        return True
    start = _first_scan(data)
    if start < 0:
        return False
    end = data.find(b"\xff\xd9", start)  # the first image's end; entropy-coded data never holds FF D9
    return data.count(b"\xff\xda", start + 2, end if end >= 0 else len(data)) > 0


def _coefficient_bytes(image: Image.Image) -> int:
    """Bytes of a JPEG's whole-image coefficient buffer: 2 bytes per coefficient, one per sampled pixel."""
    width, height = image.size
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max, v_max = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
    return sum(2 * width * height * layer[1] * layer[2] // (h_max * v_max) for layer in layers)


def _jpeg_scale(image: Image.Image, least_side: int | None, budget: int) -> int:
    """The DCT scale (1, 2, 4 or 8) to decode a JPEG at: the smallest that fits `budget`, and with `least_side`
    the largest that keeps the shorter side >= least_side."""
    width, height = image.size
    fits = [s for s in (1, 2, 4, 8) if -(-width // s) * -(-height // s) * pixel_bytes(image.mode) <= budget]
    scale = fits[0] if fits else 8
    if least_side:
        scale = max([s for s in (1, 2, 4, 8) if min(width, height) // s >= least_side] + [scale])
    return scale


def _open_within(
    data: bytes, max_pixels: int, max_decode_bytes: int, least_side: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, check the pixel limit and (PNG) the stream, choose a JPEG draft scale and check the decode budget;
    the image, not yet loaded, and the file's own size. Raises ImageDecodeError as decode_image does."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError("too_large", f"{width}x{height} exceeds {max_pixels} pixels")
    if image.format == "PNG":
        # Only PNG's verify checks anything (every chunk's CRC, up to IEND); Pillow's is a no-op for the others,
        # whose truncation the full read of load() finds. A verified image must be opened again to load.
        image.verify()
        image = Image.open(io.BytesIO(data))
    cost = width * height * pixel_bytes(image.mode)
    if image.format in ("JPEG", "MPO"):
        coefficients = _coefficient_bytes(image) if _scans_buffered(image, data) else 0
        scale = _jpeg_scale(image, least_side, max_decode_bytes - coefficients)
        if scale > 1:
            # Reads the whole stream all the same (truncation is still found), at 1/scale of the pixels.
            image.draft(image.mode, (width // scale, height // scale))
        cost = coefficients + image.width * image.height * pixel_bytes(image.mode)
    elif image.format == "WEBP":
        cost *= 3  # libwebp's own output buffer and Pillow's copy of it, beside the image
    if cost > max_decode_bytes:
        raise ImageDecodeError(
            "too_large",
            f"{width}x{height} {image.format} needs {cost >> 20} MiB to decode, over the "
            f"{max_decode_bytes >> 20} MiB budget",
        )
    return image, (width, height)


def _decode(
    data: bytes | None, max_pixels: int, max_decode_bytes: int, least_side: int | None
) -> tuple[Image.Image, tuple[int, int]]:
    """The loaded image (maybe at a JPEG draft scale) and the file's own size, or ImageDecodeError with its
    reason."""
    if not data:
        raise ImageDecodeError("undecodable", "no bytes")
    try:
        with warnings.catch_warnings():
            # Our own limit decides; Pillow's global bomb warning would only add noise to the logs.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image, full_size = _open_within(data, max_pixels, max_decode_bytes, least_side)
            image.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow says "image file is truncated" (or "broken data stream") when a known format ends early. (PNG's
        # verify says "Truncated File Read" for chunks cut off: that stays `undecodable`, as the planted data
        # of bench/planted.py expects.)
        message = str(exc)
        if not isinstance(exc, UnidentifiedImageError) and ("truncated" in message or "broken data" in message):
            raise ImageDecodeError("truncated", f"{type(exc).__name__}: {exc}") from exc
        raise ImageDecodeError("undecodable", f"{type(exc).__name__}: {exc}") from exc
    if image.width <= 0 or image.height <= 0:
        raise ImageDecodeError("undecodable", "zero-sized image")
    return image, full_size


def decode_image(
    data: bytes | None, max_pixels: int = PILLOW_MAX_PIXELS, max_decode_bytes: int = DECODE_BUDGET_BYTES
) -> Image.Image:
    """Decode `data` fully (so truncated files fail), refusing images over `max_pixels` before decoding.

    Returns the loaded image, not yet EXIF-oriented (see `orient`); `.format` is Pillow's format name.
    At most `max_decode_bytes` of pixels are decoded (estimated from the header, before decoding): a JPEG
    that would need more is decoded at the largest DCT scale (1/2, 1/4, 1/8) that fits, so its `.size` is
    then smaller than the file's; any other image that would need more is refused as `too_large`. A
    progressive or multi-scan JPEG also counts libjpeg's whole-image coefficient buffer (2 bytes per sample).
    Raises ImageDecodeError (a ValueError) with reason `undecodable`, `truncated` or `too_large`. The limits
    are checked here per call, so no process-wide `Image.MAX_IMAGE_PIXELS` is changed and no warning leaks.
    """
    return _decode(data, max_pixels, max_decode_bytes, None)[0]


@dataclass(frozen=True)
class Measurable:
    """An image decoded for checks and hashes: `image` is oriented and at most a working size; `size` is the
    full image's size after orientation, `format` Pillow's format name of the file."""

    image: Image.Image
    size: tuple[int, int]
    format: str | None


def _working_mode(mode: str) -> str:
    """The mode a reduced working copy is kept in: greyscale stays greyscale, everything else becomes RGB
    (alpha dropped, as the checks' own convert("L") and convert("RGB") drop it)."""
    return "L" if mode in ("1", "L", "I", "F") or mode.startswith("I;16") else "RGB"


def reduce_in_strips(image: Image.Image, factor: int) -> Image.Image:
    """`image` box-reduced by `factor`, converted strip by strip (a few MiB at a time) to its working mode, so
    the only full-size image is the input; equal to `image.convert(mode).reduce(factor)`."""
    mode = _working_mode(image.mode)
    width, height = image.size
    rows = max(1, _STRIP_BYTES // (4 * width * factor)) * factor
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        out.paste(strip.convert(mode).reduce(factor), (0, top // factor))
    return out


def decode_for_checks(
    data: bytes | None, max_pixels: int = PILLOW_MAX_PIXELS, max_decode_bytes: int = DECODE_BUDGET_BYTES
) -> Measurable:
    """Decode `data` for size checks, the truncation check and hashes, holding as little of it as they need.

    Every byte is still decoded (truncated files fail as in `decode_image`, with the same reasons and limits),
    but an image whose shorter side is at least 2 * WORK_SIDE is kept only as a working copy whose shorter
    side is WORK_SIDE..2*WORK_SIDE-1: a baseline JPEG is decoded straight to it (DCT scaling, `draft`), any
    other image is decoded at full size (within `max_decode_bytes`) and box-reduced in strips. Smaller images
    are decoded and oriented exactly as `decode_image` and `orient` do, so their hashes are unchanged.
    """
    image, full_size = _decode(data, max_pixels, max_decode_bytes, WORK_SIDE)
    image_format, orientation = image.format, orientation_of(image)
    factor = min(image.size) // WORK_SIDE
    if factor >= 2:  # not a baseline JPEG, or one larger than 8x the working size (draft's smallest scale)
        image = reduce_in_strips(image, factor)
    width, height = full_size
    full = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    return Measurable(orient(image, orientation), full, image_format)


# EXIF orientation -> the transposition that displays the image upright (ImageOps.exif_transpose's table).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation_of(image: Image.Image) -> int:
    """The image's EXIF orientation (1, upright, when it has none)."""
    return image.getexif().get(ExifTags.Base.Orientation, 1)


def orient(image: Image.Image, orientation: int | None = None) -> Image.Image:
    """The image as it should be displayed: EXIF orientation applied (default: the image's own), as a new
    image; the input itself, never changed, when it needs no turn (no full-size copy is made then)."""
    method = _TRANSPOSE.get(orientation_of(image) if orientation is None else orientation)
    return image if method is None else image.transpose(method)


def mime_of(image: Image.Image | str | None) -> str | None:
    """MIME type of the decoded format (`image/jpeg`) of an image or a Pillow format name, or None if Pillow
    does not know one."""
    image_format = image if image is None or isinstance(image, str) else image.format
    # Pillow opens JPEGs with a second embedded image as MPO; on the web they are served as JPEG.
    return "image/jpeg" if image_format == "MPO" else Image.MIME.get(image_format or "")


def _dct_rows(size: int, keep: int) -> np.ndarray:
    """The first `keep` rows of the unnormalised DCT-II matrix of length `size` (scipy.fft.dct's default)."""
    k = np.arange(keep)[:, None]
    n = np.arange(size)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))


# imagehash.phash's parameters: 8x8 low frequencies of the DCT of a 32x32 greyscale thumbnail.
_PHASH_SIZE = 32
_PHASH_BITS = 8
_DCT = _dct_rows(_PHASH_SIZE, _PHASH_BITS)


def _phash_thumbnail(image: Image.Image) -> np.ndarray:
    """The 32x32 greyscale float thumbnail pHash reads; large images are box-reduced first (cheap) to >= 64 px."""
    grey = image.convert("L")
    factor = min(grey.size) // (2 * _PHASH_SIZE)
    if factor >= 2:
        grey = grey.reduce(factor)
    return np.asarray(grey.resize((_PHASH_SIZE, _PHASH_SIZE), Image.Resampling.LANCZOS), dtype=np.float64)


def _pack_phash(thumbnails: np.ndarray) -> np.ndarray:
    """pHashes (N,) uint64 of thumbnails (N, 32, 32): bits = low-frequency DCT > its median, row-major, MSB first."""
    low = np.einsum("ki,nij,lj->nkl", _DCT, thumbnails, _DCT).reshape(len(thumbnails), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def compute_phash(image: Image.Image) -> np.uint64:
    """64-bit DCT perceptual hash packed into a uint64, row-major, MSB first.

    imagehash.phash's recipe (32x32 LANCZOS greyscale thumbnail, 8x8 low DCT frequencies above their median),
    with a box pre-reduction of large images, which moves the hash by a few bits at most.
    """
    return _pack_phash(_phash_thumbnail(image)[None])[0]


SIGNATURE_SIZE = 32


def compute_signature(image: Image.Image) -> np.ndarray:
    """A (3072,) float32 layout signature: the 32x32 RGB box thumbnail in [0, 1], each channel's mean removed.

    pHash keeps only the lowest 8x8 DCT frequencies, so fine textures (checks, stripes, foliage) of one
    colour scheme collapse onto nearly the same hash; at 32x32 their layouts still differ, while resized
    and re-encoded copies do not. Removing the channel means makes it blind to a uniform brightness shift.
    """
    rgb = image.convert("RGB").resize((SIGNATURE_SIZE, SIGNATURE_SIZE), Image.Resampling.BOX)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    return (pixels - pixels.mean(axis=(0, 1))).ravel()


def compute_phashes(images: Sequence[bytes | None], workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """pHashes (N,) uint64 of encoded images, and a mask (N,) bool of those that decoded.

    The fast path for large batches: JPEGs are decoded at reduced scale (Pillow's `draft`, libjpeg's DCT
    scaling) straight to greyscale, which is most of the speed; the DCT runs for the whole batch at once.
    `workers` threads decode in parallel (Pillow releases the GIL while decoding). No EXIF orientation is
    applied (imagededup applies none either). Undecodable images get hash 0 and mask False.
    """
    thumbnails = np.zeros((len(images), _PHASH_SIZE, _PHASH_SIZE), dtype=np.float64)
    ok = np.zeros(len(images), dtype=bool)

    def load(indices: range) -> None:
        for i in indices:
            data = images[i]
            if not data:
                continue
            try:
                with Image.open(io.BytesIO(data)) as image:
                    image.draft("L", (2 * _PHASH_SIZE, 2 * _PHASH_SIZE))
                    thumbnails[i] = _phash_thumbnail(image)
            except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
                continue
            ok[i] = True

    if workers <= 1:
        load(range(len(images)))
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(load, [range(k, len(images), workers) for k in range(workers)]))
    hashes = _pack_phash(thumbnails)
    hashes[~ok] = 0
    return hashes, ok


def get_information_score(image: Image.Image) -> float:
    """Shannon entropy of the greyscale histogram over its 8-bit maximum, in [0, 1]; low = near-uniform image.

    A flat colour scores 0, a two-tone logo ~0.125, photographs 0.8-0.95. Computed on a <= 128 px thumbnail.
    """
    grey = image.convert("L")
    factor = max(grey.size) // 128
    if factor >= 2:
        grey = grey.reduce(factor)
    counts = np.asarray(grey.histogram(), dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return max(0.0, float(-(p * np.log2(p)).sum() / 8.0))
