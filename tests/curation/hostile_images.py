"""Hostile images for the bounded-memory tests: small files that decode to hundreds of megabytes.

`write_hostile(folder)` writes them as files (run it in a child process: building the two 9000x9000 JPEGs holds
~330 MB, which should not stay in the test process). `measure_child(path)` is the code a fresh interpreter runs
to curate one of them and report its peak RSS above the baseline it measured before curating.
"""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def flat_png(width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 200), keep: float = 1.0) -> bytes:
    """An RGB PNG of one flat colour, compressed row by row (never held decoded): 9400x9400 is ~280 KB. With
    `keep` < 1 only that fraction of the compressed pixels is written, in well-formed chunks (CRCs valid, IEND
    present), so only decoding finds that the pixel data ends early."""
    packer, row, idat = zlib.compressobj(9), b"\x00" + bytes(rgb) * width, []
    for _ in range(height):
        idat.append(packer.compress(row))
    idat.append(packer.flush())
    pixels = b"".join(idat)
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + _chunk(b"IDAT", pixels[: int(len(pixels) * keep)]) + _chunk(b"IEND", b"")


def claim_size(data: bytes, width: int, height: int) -> bytes:
    """A small PNG or baseline JPEG whose header is rewritten to claim width x height: its data ends far too early
    (a JPEG also loses its end marker, so the decoder runs out of bytes instead of meeting an early end)."""
    if data.startswith(b"\x89PNG"):
        ihdr = bytearray(data[16:29])
        ihdr[0:8] = struct.pack(">II", width, height)
        return data[:8] + _chunk(b"IHDR", bytes(ihdr)) + data[33:]
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 : -2]  # and no end marker


def photo(size: tuple[int, int], seed: int = 11) -> Image.Image:
    """A photo-like picture: a smooth random colour field (bicubic from 8x6) with fine noise, at any size."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    image = coarse.resize(size, Image.Resampling.BICUBIC)
    noise = Image.fromarray(rng.integers(0, 256, (256, 256), dtype=np.uint8)).resize(size)
    return Image.blend(image, Image.merge("RGB", [noise] * 3), 0.08)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def palette_png(width: int, height: int) -> bytes:
    """A 16-colour palette PNG of diagonal bands (1 byte per pixel decoded, 4 once converted to RGB)."""
    y, x = np.ogrid[:height, :width]
    indices = ((x // 97 + y // 61) % 16).astype(np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([v for k in range(16) for v in (k * 16, 255 - k * 16, (k * 53) % 256)])
    return _encode(image, "PNG", compress_level=1)


def many_frame_gif(side: int, frames: int) -> bytes:
    """An animated GIF of `frames` full frames of side x side, each a different pattern."""
    y, x = np.ogrid[:side, :side]
    images = [Image.fromarray(((x // (7 + k) + y // 13) % 64).astype(np.uint8) * 4, "L") for k in range(frames)]
    return _encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)


def write_hostile(folder: Path) -> dict[str, Path]:
    """Write each hostile image to `folder`; name -> path."""
    big = photo((9000, 9000))
    jpeg = _encode(big, "JPEG", quality=85)
    files = {
        "flat_png_9400": flat_png(9400, 9400),
        "jpeg_9000": jpeg,
        "truncated_jpeg_9000": jpeg[: len(jpeg) * 9 // 10],
        "progressive_jpeg_9000": _encode(big, "JPEG", quality=85, progressive=True),
        "palette_png_9400": palette_png(9400, 9400),
        "gif_150_frames": many_frame_gif(1000, 150),
        "truncated_jpeg_claims_9000": claim_size(_encode(photo((640, 480)), "JPEG", quality=85), 9000, 9000),
        "truncated_png_9400": flat_png(9400, 9400)[:150_000],
        "truncated_png_6000": flat_png(6000, 6000, keep=0.9),
    }
    del big
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.img"
        paths[name].write_bytes(data)
    return paths


# Run by a fresh interpreter: warm up (imports, one small curate), then curate one file and print
# "baseline_kib peak_kib reason" where reason is the row's drop reason or "kept".
MEASURE_CHILD = """
import resource, sys
from curation_records import build_table, encode, image_row, smooth_image
from curation.curate import curate
def run(data, url):
    out = curate(build_table([image_row(data, url, 0)]))
    return out.dropped.column("drop_reason").to_pylist()[0] if out.dropped.num_rows else "kept"
run(encode(smooth_image(3, (600, 600)), "JPEG"), "http://127.0.0.1/warm.jpg")
run(encode(smooth_image(3, (600, 600)), "PNG"), "http://127.0.0.1/warm.png")
data = open(sys.argv[1], "rb").read()
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reason = run(data, "http://127.0.0.1/hostile")
print(baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, reason)
"""


if __name__ == "__main__":
    for name, path in write_hostile(Path(sys.argv[1])).items():
        print(name, path.stat().st_size)
