"""What surrounds an image on a page: its paragraphs, its `srcset` URLs, and whitespace-cleaned attribute text.

Kept apart from crawlers.page_text so the crawl process (the spider) never imports trafilatura, and the extraction
workers (crawlers.extraction_worker) never import Scrapy: each pays only its own imports at start.
"""

from __future__ import annotations

from parsel import Selector

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


def clean_text(value: str | None) -> str | None:
    """`value` with runs of whitespace made one space; None when nothing is left."""
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None
