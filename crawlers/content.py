"""Content sniffing: what a response body really is, read from its bytes rather than its Content-Type header."""

from __future__ import annotations

import hashlib

# Magic numbers of the image formats browsers show (WHATWG MIME sniffing, "image type pattern").
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# Tags that open an HTML document (WHATWG MIME sniffing, "rules for identifying an unknown MIME type",
# step "text/html"), matched case-insensitively after leading whitespace.
_HTML_OPENERS: tuple[bytes, ...] = (
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<body",
    b"<script",
    b"<iframe",
    b"<h1",
    b"<div",
    b"<font",
    b"<table",
    b"<a",
    b"<style",
    b"<title",
    b"<b",
    b"<br",
    b"<p",
    b"<!--",
    b"<meta",
)
# The WHATWG algorithm reads at most the first 1445 bytes ("resource header"); so do we.
SNIFF_BYTES = 1445
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type from the first bytes (JPEG, PNG, GIF, WebP); None when unknown."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def looks_like_html(data: bytes) -> bool:
    """Whether the body starts like an HTML document (a tag from the WHATWG list, after a BOM and whitespace).

    Binary data (a NUL byte in the header, as the WHATWG "binary data" rule says) is never HTML.
    """
    head = data[:SNIFF_BYTES]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom) :]
            if bom != _BOMS[0]:  # UTF-16: compare the ASCII bytes only
                head = head.replace(b"\x00", b"")
            break
    if b"\x00" in head:
        return False
    head = head.lstrip(b" \t\r\n\x0c").lower()
    if head.startswith(b"<?xml"):  # XHTML; an RSS feed or a sitemap is XML without an <html> element
        return b"<html" in head
    for opener in _HTML_OPENERS:
        if head.startswith(opener):
            following = head[len(opener) : len(opener) + 1]
            # "<b" must not match "<bogus": the tag name ends at space, ">" or the end of the header
            if opener == b"<!--" or following in (b"", b" ", b">", b"\t", b"\n", b"\r", b"\x0c"):
                return True
    return False


def fingerprint(data: bytes) -> str:
    """A content fingerprint: SHA-256 hex of the bytes as fetched (equal bytes, equal fingerprint)."""
    return hashlib.sha256(data).hexdigest()
