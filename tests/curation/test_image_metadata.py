"""Every metadata block a real camera or editor writes (EXIF with thumbnail, XMP, IPTC, comments, PNG text
chunks, WebP EXIF/XMP) is gone after scrubbing; only pixels (and an ICC profile) survive."""

from __future__ import annotations

import io
import struct

import pytest
from curation_records import encode, smooth_image
from PIL import Image, PngImagePlugin

from curation.scrub import ScrubConfig, scrub_image

MARK = b"PLANTED-Jane-Doe-51.5N"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _exif_with_thumbnail() -> bytes:
    """An APP1 Exif payload whose IFD1 holds a JPEG thumbnail (itself carrying the mark in a comment)."""
    thumb = encode(smooth_image(5, (16, 16)), "JPEG", quality=80, comment=MARK)
    ifd1 = (
        struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, 44) + struct.pack("<HHII", 0x0202, 4, 1, len(thumb))
    )
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<HI", 0, 14) + ifd1 + struct.pack("<I", 0) + thumb
    return b"Exif\x00\x00" + tiff


def planted_jpeg() -> bytes:
    base = encode(smooth_image(6, (64, 48)), "JPEG", quality=90)
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><dc:creator>" + MARK + b"</dc:creator></x:xmpmeta>"
    iptc = (
        b"Photoshop 3.0\x008BIM\x04\x04\x00\x00"
        + struct.pack(">I", len(MARK) + 5)
        + b"\x1c\x02\x50"
        + struct.pack(">H", len(MARK))
        + MARK
    )
    segments = _segment(0xE1, _exif_with_thumbnail()) + _segment(0xE1, xmp) + _segment(0xED, iptc)
    segments += _segment(0xFE, b"comment " + MARK)
    return base[:2] + segments + base[2:]


def planted_png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", MARK.decode())
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>" + MARK.decode() + "</x:xmpmeta>")
    info.add_text("Comment", MARK.decode(), zip=True)
    exif = Image.Exif()
    exif[0x013B] = MARK.decode()  # Artist
    return encode(smooth_image(7, (48, 48)), "PNG", pnginfo=info, exif=exif)


def planted_webp() -> bytes:
    exif = Image.Exif()
    exif[0x013B] = MARK.decode()
    xmp = b"<x:xmpmeta>" + MARK + b"</x:xmpmeta>"
    return encode(smooth_image(8, (48, 48)), "WEBP", quality=90, exif=exif, xmp=xmp)


@pytest.mark.parametrize("make", [planted_jpeg, planted_png, planted_webp])
def test_every_metadata_block_and_thumbnail_is_removed(make):
    data = make()
    assert MARK in data  # the plant took
    result = scrub_image(data, ScrubConfig(blur_faces=False))
    assert result.metadata_removed is True
    assert MARK not in result.data
    cleaned = Image.open(io.BytesIO(result.data))
    assert len(cleaned.getexif()) == 0
    assert not set(cleaned.info) & {"exif", "xmp", "XML:com.adobe.xmp", "photoshop", "comment", "Author", "Comment"}
    if result.mime == "image/jpeg":
        assert result.data.count(b"\xff\xd8") == 1  # no embedded thumbnail JPEG
        assert b"\xff\xe1" not in result.data and b"\xff\xed" not in result.data  # no APP1 (EXIF/XMP), APP13
