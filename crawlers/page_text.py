"""What a page says: its main text (trafilatura, else the visible text), and the words and URLs around an image."""

from __future__ import annotations

import logging

import scrapy
import trafilatura
from scrapy.selector import Selector

logger = logging.getLogger(__name__)

# Enough words to say what an image is about (a paragraph or two) without copying the page per image.
CONTEXT_CHARS = 400


def surrounding_text(node: Selector) -> str | None:
    """The page text beside an image: the paragraph before and after its figure (or the image itself)."""
    anchor = node.xpath("ancestor::figure[1]") or node.xpath("ancestor::picture[1]") or [node]
    anchor = anchor[0]
    before = " ".join(anchor.xpath("preceding-sibling::p[1]//text()").getall())
    after = " ".join(anchor.xpath("following-sibling::p[1]//text()").getall())
    text = clean_text(f"{before} {after}")
    return text[:CONTEXT_CHARS] if text else None


def parse_srcset(srcset: str) -> list[str]:
    """The URLs of a `srcset` attribute ("a.jpg 1x, b.jpg 2x" -> ["a.jpg", "b.jpg"])."""
    urls = []
    for candidate in srcset.split(","):
        parts = candidate.strip().split()
        if parts:
            urls.append(parts[0])
    return urls


def extract_text(html: str, url: str) -> str | None:
    """Main text by trafilatura; all visible body text when trafilatura finds no main content or fails."""
    try:
        text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, favor_recall=True)
    except Exception as exc:  # trafilatura on hostile markup: the visible-text fallback still gives a record
        logger.warning("trafilatura failed on %s (%s: %s); using visible text", url, type(exc).__name__, exc)
        text = None
    if text:
        return text
    selector = scrapy.Selector(text=html)
    parts = selector.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]").getall()
    visible = " ".join(" ".join(p.split()) for p in parts if p.strip())
    return visible or None


def extract_texts(pages: list[tuple[str, str]]) -> list[str | None]:
    """extract_text of each (html, url): one task of the extraction pool (crawlers.extraction)."""
    return [extract_text(html, url) for html, url in pages]


def clean_text(value: str | None) -> str | None:
    """`value` with runs of whitespace made one space; None when nothing is left."""
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None
