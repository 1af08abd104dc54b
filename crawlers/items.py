"""The items the spider yields: one fetched HTML page or one fetched image, before they become records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class PageItem:
    """An HTML page as fetched: its raw bytes (the record's identity) and the text extracted from it."""

    url: str
    html: bytes
    title: str | None
    text: str | None
    fetched_at: datetime


@dataclass
class ImageItem:
    """An image as fetched, unmodified, with the page context it was found in."""

    url: str
    page_url: str | None
    body: bytes
    alt_text: str | None
    caption: str | None
    fetched_at: datetime
