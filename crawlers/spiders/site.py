"""The `site` spider: follows a site's links from a start URL, yielding its pages' text and every image they show."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import scrapy
import trafilatura
from scrapy.crawler import Crawler
from scrapy.http import Response, TextResponse

from crawlers.items import ImageItem, PageItem
from crawlers.pipelines import sniff_mime

# Responses the budget allows per HTML page (the page, its images, robots.txt), for the
# CLOSESPIDER_PAGECOUNT backstop; the sample site shows 5 images a page, real galleries a few dozen.
RESPONSES_PER_PAGE = 50


def parse_srcset(srcset: str) -> list[str]:
    """The URLs of a `srcset` attribute ("a.jpg 1x, b.jpg 2x" -> ["a.jpg", "b.jpg"])."""
    urls = []
    for candidate in srcset.split(","):
        parts = candidate.strip().split()
        if parts:
            urls.append(parts[0])
    return urls


def extract_text(html: str, url: str) -> str | None:
    """Main text by trafilatura; all visible body text when trafilatura finds no main content."""
    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, favor_recall=True)
    if text:
        return text
    selector = scrapy.Selector(text=html)
    parts = selector.xpath("//body//text()[not(ancestor::script) and not(ancestor::style)]").getall()
    visible = " ".join(" ".join(p.split()) for p in parts if p.strip())
    return visible or None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


class SiteSpider(scrapy.Spider):
    """Crawl one site from `start_url`; `allowed_domains` is a comma list (default: the start URL's host)."""

    name = "site"

    def __init__(
        self,
        start_url: str | None = None,
        allowed_domains: str | list[str] | None = None,
        max_pages: int | str = 2000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not start_url:
            raise ValueError("the site spider needs -a start_url=http(s)://...")
        parsed = urlparse(start_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"start_url must be an http(s) URL, got {start_url!r}")
        self.start_url = start_url
        if isinstance(allowed_domains, str):
            allowed_domains = [d.strip() for d in allowed_domains.split(",") if d.strip()]
        # OffsiteMiddleware matches hosts without ports, so 127.0.0.1 covers 127.0.0.1:8765.
        self.allowed_domains = list(allowed_domains or [parsed.hostname])
        self.max_pages = int(max_pages)
        if self.max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages!r}")
        self.pages_parsed = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SiteSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        if not crawler.settings.getint("CLOSESPIDER_PAGECOUNT"):
            crawler.settings.set("CLOSESPIDER_PAGECOUNT", spider.max_pages * RESPONSES_PER_PAGE, priority="spider")
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.start_url, callback=self.parse)

    def parse(self, response: Response) -> Iterator[Any]:
        fetched_at = datetime.now(UTC)
        if not isinstance(response, TextResponse):
            # A link that led straight to a file: keep it if it is an image, like any other image.
            if sniff_mime(response.body):
                yield ImageItem(response.url, None, response.body, None, None, fetched_at)
            else:
                self.crawler.stats.inc_value("flywheel/non_html_skipped")
            return
        if self.pages_parsed >= self.max_pages:
            self.crawler.stats.inc_value("flywheel/pages_over_budget")
            return
        self.pages_parsed += 1
        title = _clean(response.css("title::text").get())
        yield PageItem(response.url, response.body, title, extract_text(response.text, response.url), fetched_at)
        yield from self._image_requests(response)
        if self.pages_parsed < self.max_pages:
            for href in response.css("a::attr(href)").getall():
                if urlparse(response.urljoin(href)).scheme in ("http", "https"):
                    yield response.follow(href, callback=self.parse)

    def _image_requests(self, response: TextResponse) -> Iterator[scrapy.Request]:
        for node in response.css("img, picture source"):
            if node.root.tag == "img":
                alt = _clean(node.attrib.get("alt"))
            else:
                alt = _clean(node.xpath("ancestor::picture[1]//img/@alt").get())
            caption = _clean(" ".join(node.xpath("ancestor::figure[1]/figcaption//text()").getall()))
            urls = [node.attrib["src"]] if node.attrib.get("src") else []
            urls += parse_srcset(node.attrib.get("srcset", ""))
            for url in urls:
                if url.startswith("data:"):
                    continue
                yield response.follow(
                    url,
                    callback=self.parse_image,
                    cb_kwargs={"page_url": response.url, "alt_text": alt, "caption": caption},
                )

    def parse_image(
        self, response: Response, page_url: str, alt_text: str | None, caption: str | None
    ) -> Iterator[ImageItem]:
        yield ImageItem(response.url, page_url, response.body, alt_text, caption, datetime.now(UTC))
