"""The items the spider yields: one fetched HTML page or one fetched image, before they become records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class PageItem:
    """An HTML page as fetched: its raw bytes (the record's identity) and the text extracted from it.

    `etag`, `last_modified`, `links` and `images` ([url, alt, caption]) feed the incremental crawl state.
    `markup`: the HTML decoded as the response's encoding says, until the extraction stage
    (crawlers.extraction.TextExtractionPipeline) has turned it into `text`.
    """

    url: str
    html: bytes
    title: str | None
    text: str | None
    fetched_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    links: list[str] = field(default_factory=list)
    images: list[list[str | None]] = field(default_factory=list)
    markup: str | None = None


@dataclass
class ImageItem:
    """An image as fetched, unmodified, with the page context it was found in."""

    url: str
    page_url: str | None
    body: bytes
    alt_text: str | None
    caption: str | None
    fetched_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    context_text: str | None = None
