"""Image decoding: bytes as fetched to a checked, oriented Pillow image, its format and its perceptual hash."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default for Image.MAX_IMAGE_PIXELS (~ a 250 MB 24-bit RGB image); above it Pillow warns.
PILLOW_MAX_PIXELS = 89_478_485


class ImageDecodeError(ValueError):
    """An image that cannot be used; `reason` is a drop reason (`undecodable`, `truncated` or `too_large`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_image(data: bytes | None, max_pixels: int = PILLOW_MAX_PIXELS) -> Image.Image:
    """Decode `data` fully (so truncated files fail), refusing images over `max_pixels` before decoding.

    Returns the loaded image, not yet EXIF-oriented (see `orient`); `.format` is Pillow's format name.
    Raises ImageDecodeError (a ValueError) with reason `undecodable`, `truncated` or `too_large`. The pixel limit is
    checked here per call, so no process-wide `Image.MAX_IMAGE_PIXELS` is changed and no warning leaks.
    """
    if not data:
        raise ImageDecodeError("undecodable", "no bytes")
    try:
        with warnings.catch_warnings():
            # Our own limit decides; Pillow's global bomb warning would only add noise to the logs.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise ImageDecodeError("too_large", f"{width}x{height} exceeds {max_pixels} pixels")
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow says "image file is truncated" (or "broken data stream") when a known format ends early.
        if not isinstance(exc, UnidentifiedImageError) and ("truncated" in str(exc) or "broken data" in str(exc)):
            raise ImageDecodeError("truncated", f"{type(exc).__name__}: {exc}") from exc
        raise ImageDecodeError("undecodable", f"{type(exc).__name__}: {exc}") from exc
    if image.width <= 0 or image.height <= 0:
        raise ImageDecodeError("undecodable", "zero-sized image")
    return image


def orient(image: Image.Image) -> Image.Image:
    """The image as it should be displayed: EXIF orientation applied (a copy; the input is not changed)."""
    oriented = ImageOps.exif_transpose(image)
    return oriented if oriented is not None else image


def mime_of(image: Image.Image) -> str | None:
    """MIME type of the decoded format (`image/jpeg`), or None if Pillow does not know one."""
    # Pillow opens JPEGs with a second embedded image as MPO; on the web they are served as JPEG.
    return "image/jpeg" if image.format == "MPO" else Image.MIME.get(image.format or "")


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
