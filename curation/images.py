"""Image decoding: bytes as fetched to a checked, oriented Pillow image, its format and its perceptual hash."""

from __future__ import annotations

import io
import warnings

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own default for Image.MAX_IMAGE_PIXELS (~ a 250 MB 24-bit RGB image); above it Pillow warns.
PILLOW_MAX_PIXELS = 89_478_485


class ImageDecodeError(ValueError):
    """An image that cannot be used; `reason` is a drop reason (`undecodable` or `too_large`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_image(data: bytes | None, max_pixels: int = PILLOW_MAX_PIXELS) -> Image.Image:
    """Decode `data` fully (so truncated files fail), refusing images over `max_pixels` before decoding.

    Returns the loaded image, not yet EXIF-oriented (see `orient`); `.format` is Pillow's format name.
    Raises ImageDecodeError (a ValueError) with reason `undecodable` or `too_large`. The pixel limit is
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
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


def compute_phash(image: Image.Image) -> np.uint64:
    """64-bit DCT perceptual hash (imagehash.phash, 8x8) packed into a uint64, row-major, MSB first."""
    bits = imagehash.phash(image).hash.flatten()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))
