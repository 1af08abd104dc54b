"""A page's main text: trafilatura, else the visible text; what the extraction workers run."""

from __future__ import annotations

import logging

import trafilatura
from parsel import Selector

logger = logging.getLogger(__name__)


def extract_text(html: str, url: str) -> str | None:
    """Main text by trafilatura; all visible body text when trafilatura finds no main content or fails."""
    try:
        text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, favor_recall=True)
    except Exception as exc:  # trafilatura on hostile markup: the visible-text fallback still gives a record
        logger.warning("trafilatura failed on %s (%s: %s); using visible text", url, type(exc).__name__, exc)
        text = None
    if text:
        return text
    # parsel's Selector is the one scrapy.Selector builds on: the same tree, without importing Scrapy here
    parts = Selector(text=html).xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]").getall()
    visible = " ".join(" ".join(p.split()) for p in parts if p.strip())
    return visible or None


def extract_texts(pages: list[tuple[str, str]]) -> list[str | None]:
    """extract_text of each (html, url): one batch of an extraction worker (crawlers.extraction_worker)."""
    return [extract_text(html, url) for html, url in pages]
