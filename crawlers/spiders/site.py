"""The `site` spider: follows a site's links from a start URL, yielding its pages' text and every image they show."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap
from twisted.python.failure import Failure

from crawlers.config import CrawlConfig, CrawlJob
from crawlers.content import fingerprint, looks_like_html, sniff_mime
from crawlers.items import ImageItem, PageItem
from crawlers.page_context import clean_text, parse_srcset, surrounding_text
from crawlers.report import classify_failure
from crawlers.state import CrawlState
from crawlers.urls import UrlScope, canonicalize_url

logger = logging.getLogger(__name__)

# Responses the budget allows per HTML page (the page, its images, robots.txt), for the
# CLOSESPIDER_PAGECOUNT backstop; the sample site shows 5 images a page, real galleries a few dozen.
RESPONSES_PER_PAGE = 50
# Log the first few occurrences of each skip reason at INFO, the rest at DEBUG: a trap yields thousands.
_LOUD_NOTES = 5
_FEED_TYPES = ("application/rss+xml", "application/atom+xml")
# Over-budget links kept per page of budget, to replace scheduled page requests that turn out to be no page
# (a 404, a redirect off-site, not HTML); beyond this they are dropped and counted (skipped/page_budget).
BACKLOG_PER_PAGE = 4
# <meta> tags naming a page's card image (Open Graph, Twitter), in the order they are taken.
_CARD_IMAGE_PROPERTIES = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image")
_CARD_IMAGE_META = (
    "//meta[@content][starts-with(@property, 'og:image') or starts-with(@name, 'og:image')"
    " or @property = 'twitter:image' or @name = 'twitter:image']"
)
# Request.meta key of a page request that holds one of the max_pages slots.
PAGE_SLOT = "flywheel_page_slot"


class SiteSpider(scrapy.Spider):
    """Crawl one site from its CrawlConfig's `start_url` (crawlers.config; the job comes as FLYWHEEL_CRAWL_JOB).

    `allowed_domains` defaults to the start URL's host. robots.txt `Sitemap:` lines are always used as seeds.
    At most `max_pages` page requests are out at any time or done: links found beyond that wait in a bounded
    backlog and are sent only when a scheduled one turns out not to be a page (an error, not HTML).
    """

    name = "site"

    def __init__(self, config: CrawlConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.start_url = config.start_url
        # OffsiteMiddleware matches hosts without ports, so 127.0.0.1 covers 127.0.0.1:8765.
        self.allowed_domains = list(config.allowed_domains or [urlsplit(config.start_url).hostname])
        self.max_pages = config.max_pages
        self.max_bytes = config.max_bytes or 0
        self.fetch_images = config.fetch_images
        self.trailing_slash = config.trailing_slash
        self.sitemap_urls = list(config.sitemap_urls or [])
        self.scope = UrlScope(config.include or [], config.exclude or [], config.max_pages_per_template)
        self.pages_parsed = 0
        self.bytes_seen = 0
        self.page_slots = 0  # page requests sent and not yet known to be no page, plus pages parsed
        self.backlog: deque[scrapy.Request] = deque()
        self._topping_up = False
        self._pages_seen: set[str] = set()
        # Links and image references as written on pages (absolute, before canonicalisation) whose URL is already
        # followed or requested: most references on a site repeat (a page's nav, a shared picture), and these skip
        # canonicalisation, scope checks and an image's XPath context (cProfile of the crawl child: bench/CRAWL.md).
        self._hrefs_followed: set[str] = set()
        self._image_refs_requested: set[str] = set()
        self._images_requested: set[str] = set()
        self._notes: Counter[str] = Counter()
        self._sitemaps_seen: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SiteSpider:
        job = CrawlJob.from_crawler(crawler)
        spider = super().from_crawler(crawler, *args, config=job.config, **kwargs)
        settings = crawler.settings
        if not settings.getint("CLOSESPIDER_PAGECOUNT"):
            settings.set("CLOSESPIDER_PAGECOUNT", spider.max_pages * RESPONSES_PER_PAGE, priority="spider")
        spider.page_maxsize = settings.getint("FLYWHEEL_PAGE_MAXSIZE")
        spider.image_maxsize = settings.getint("FLYWHEEL_IMAGE_MAXSIZE")
        spider.max_sitemaps = settings.getint("FLYWHEEL_MAX_SITEMAPS")
        crawler.signals.connect(spider._request_dropped, signal=signals.request_dropped)
        spider.crawl_state = CrawlState(job.state_path)
        crawler.signals.connect(spider._robots_parsed, signal=signals.robots_parsed)
        return spider

    # --- bookkeeping -------------------------------------------------------------------------------------

    def note(self, key: str, url: str, detail: str = "") -> None:
        """Count `key` in the stats and log it with the URL (loudly only the first few times per key)."""
        self.crawler.stats.inc_value(f"flywheel/{key}")
        self._notes[key] += 1
        level = logging.INFO if self._notes[key] <= _LOUD_NOTES else logging.DEBUG
        logger.log(level, "%s: %s%s", key, url, f" ({detail})" if detail else "")

    def on_error(self, failure: Failure) -> None:
        """Errback of every request: count the failure by kind and log its reason; never fatal to the crawl."""
        request = getattr(failure, "request", None)
        self._release(request)
        url = request.url if request is not None else "?"
        kind = classify_failure(failure.value)
        if kind is None:
            logger.debug("not fetched: %s (%s)", url, failure.value)
            return
        self.note(f"errors/{kind}", url, f"{type(failure.value).__name__}: {str(failure.value)[:200]}")

    def _canonical(self, url: str) -> str | None:
        try:
            return canonicalize_url(url, trailing_slash=self.trailing_slash)
        except ValueError:
            self.note("skipped/bad_url", url[:200])
            return None

    def _account(self, response: Response) -> None:
        """Add the body to the byte budget; close the crawl gracefully once it is spent."""
        self.bytes_seen += len(response.body)
        if self.max_bytes and self.bytes_seen > self.max_bytes:
            raise CloseSpider("byte_budget")

    # --- requests ------------------------------------------------------------------------------------------

    def page_request(self, url: str, *, seed: str | None = None) -> scrapy.Request | None:
        """A request for a page URL (canonicalised, in scope, conditional if it was kept before), or None."""
        canonical = self._canonical(url)
        if canonical is None:
            return None
        reason = self.scope.find_skip_reason(canonical)
        if reason is not None:
            self.note(f"out_of_scope/{reason}", canonical)
            return None
        self._hrefs_followed.add(url)
        if canonical in self._pages_seen:
            return None
        self._pages_seen.add(canonical)
        if seed:
            self.crawler.stats.inc_value(f"flywheel/seeds/{seed}")
        prior = self.crawl_state.get(canonical)
        request = scrapy.Request(
            canonical,
            callback=self.parse,
            errback=self.on_error,
            headers=prior.conditional_headers() if prior else None,
            meta={"download_maxsize": self.page_maxsize, "handle_httpstatus_list": [304], PAGE_SLOT: True},
        )
        return self._admit(request)

    # --- the page budget -----------------------------------------------------------------------------------

    def _admit(self, request: scrapy.Request) -> scrapy.Request | None:
        """`request` if a page slot is free (it takes it); else it waits in the backlog and None is returned."""
        if self.page_slots < self.max_pages:
            self.page_slots += 1
            return request
        if len(self.backlog) < self.max_pages * BACKLOG_PER_PAGE:
            self.backlog.append(request)
        else:
            self.crawler.stats.inc_value("flywheel/skipped/page_budget")
        return None

    def _release(self, request: scrapy.Request | None) -> None:
        """A page request that gave no page frees its slot; waiting links take the free slots."""
        if request is None or not request.meta.get(PAGE_SLOT):
            return
        request.meta[PAGE_SLOT] = False  # once per request, whichever of its ends comes first
        self.page_slots -= 1
        if self._topping_up:  # a request dropped while the loop below sends one: the loop goes on
            return
        self._topping_up = True
        try:
            while self.backlog and self.page_slots < self.max_pages and self.crawler.engine is not None:
                self.page_slots += 1
                self.crawler.engine.crawl(self.backlog.popleft())
        finally:
            self._topping_up = False

    def _request_dropped(self, request: scrapy.Request, spider: scrapy.Spider | None = None) -> None:
        """The scheduler refused a request (its dupefilter: seen by an earlier run of this JOBDIR)."""
        self._release(request)

    def _count_page(self, request: scrapy.Request | None) -> None:
        self.pages_parsed += 1
        if request is not None and not request.meta.get(PAGE_SLOT):
            self.page_slots += 1  # resumed from a JOBDIR queue: it took no slot in this run yet
        if request is not None:
            request.meta[PAGE_SLOT] = False

    def image_request(
        self, url: str, page_url: str, alt: str | None, caption: str | None, context: str | None = None
    ) -> scrapy.Request | None:
        canonical = self._canonical(url)
        if canonical is None:
            return None
        prior = self.crawl_state.get(canonical)
        return scrapy.Request(
            canonical,
            callback=self.parse_image,
            errback=self.on_error,
            headers=prior.conditional_headers() if prior else None,
            cb_kwargs={"page_url": page_url, "alt_text": alt, "caption": caption, "context_text": context},
            meta={"download_maxsize": self.image_maxsize, "handle_httpstatus_list": [304]},
        )

    def sitemap_request(self, url: str) -> scrapy.Request | None:
        canonical = self._canonical(url)
        if canonical is None or canonical in self._sitemaps_seen:
            return None
        if len(self._sitemaps_seen) >= self.max_sitemaps:
            self.note("skipped/sitemap_budget", canonical)
            return None
        self._sitemaps_seen.add(canonical)
        return scrapy.Request(
            canonical, callback=self.parse_sitemap, errback=self.on_error, meta={"download_maxsize": self.page_maxsize}
        )

    async def start(self) -> AsyncIterator[scrapy.Request]:
        request = self.page_request(self.start_url, seed="start_url")
        if request is not None:
            yield request
        for url in self.sitemap_urls:
            sitemap = self.sitemap_request(url)
            if sitemap is not None:
                yield sitemap

    def _robots_parsed(self, robotparser: Any, request: scrapy.Request) -> None:
        """robots.txt `Sitemap:` lines become seeds (hosts within allowed_domains only, by OffsiteMiddleware)."""
        sitemaps = list(getattr(getattr(robotparser, "rp", None), "sitemaps", []) or [])
        for url in sitemaps:
            sitemap = self.sitemap_request(url)
            if sitemap is not None and self.crawler.engine is not None:
                self.crawler.engine.crawl(sitemap)

    # --- callbacks -----------------------------------------------------------------------------------------

    def parse(self, response: Response) -> Iterator[Any]:
        """A page's image and link requests, then its item (its text is extracted by the item pipeline).

        A plain generator, never awaiting: Scrapy hands its output on as fast as a bare spider's, while an async
        callback that waited on extraction woke CONCURRENT_ITEMS idle workers per page (cProfile of the crawl child).
        """
        self._account(response)
        fetched_at = datetime.now(UTC)
        if self.pages_parsed >= self.max_pages:  # only a request resumed from a JOBDIR queue gets here
            self.crawler.stats.inc_value("flywheel/pages_over_budget")
            return
        if response.status == 304:
            yield from self._revalidated_page(response)
            return
        body = response.body
        if sniff_mime(body):
            # A link that led straight to an image file: keep it like any other image.
            self._release(response.request)
            if self._changed(response, "image"):
                yield ImageItem(response.url, None, body, None, None, fetched_at, *self._validators(response))
            return
        if not looks_like_html(body):
            self._release(response.request)
            content_type = (response.headers.get("Content-Type") or b"none").decode("latin-1")[:80]
            self.note("skipped/not_html", response.url, f"Content-Type {content_type}, body is not HTML")
            return
        content_type = (response.headers.get("Content-Type") or b"").decode("latin-1").lower()
        if content_type and "html" not in content_type:
            self.note("corrected/html_content_type", response.url, f"HTML bytes under Content-Type {content_type[:80]}")
        if not isinstance(response, TextResponse):
            # HTML that Scrapy did not recognise (an image or octet-stream type): trust the bytes, not the header.
            response = HtmlResponse(response.url, body=body, request=response.request)
        self._count_page(response.request)
        links = self._links(response)
        images = self._images(response) if self.fetch_images else []
        changed = self._changed(response, "page")
        # The requests go first: the scheduler has them before this page's item waits for its text.
        for request in images:
            # an image many pages show is fetched once: its repeats would only be dropped by the dupefilter,
            # after a trip through every spider middleware and the scheduler (90 % of image requests here)
            if request.url not in self._images_requested:
                self._images_requested.add(request.url)
                yield request
        if self.pages_parsed < self.max_pages:
            for request in [*links, *self._feed_requests(response)]:
                yield request
        if changed:
            title = clean_text(response.css("title::text").get())
            yield PageItem(
                response.url,
                body,
                title,
                None,
                fetched_at,
                *self._validators(response),
                links=[r.url for r in links],
                images=[
                    [r.url, r.cb_kwargs["alt_text"], r.cb_kwargs["caption"], r.cb_kwargs["context_text"]]
                    for r in images
                ],
                markup=response.text,
            )

    def _revalidated_page(self, response: Response) -> Iterator[scrapy.Request]:
        """304 Not Modified: nothing to write, but the links and images it had last time are still followed."""
        self._count_page(response.request)
        self.crawler.stats.inc_value("flywheel/unchanged/page_304")
        prior = self.crawl_state.get(response.request.url if response.request else response.url)
        if prior is None:
            self.note("skipped/304_without_state", response.url)
            return
        for url, alt, caption, *context in prior.images if self.fetch_images else []:
            request = self.image_request(str(url), response.url, alt, caption, context[0] if context else None)
            if request is not None:
                yield request
        if self.pages_parsed < self.max_pages:
            for link in prior.links:
                request = self.page_request(link)
                if request is not None:
                    yield request

    def _changed(self, response: Response, kind: str) -> bool:
        """False when the state holds this URL with the same fingerprint (a server that ignores validators).

        An unchanged body under new validators (a touched file, a rebuilt site) updates them in the state at
        once: the content it stands for is already kept, so the next crawl can get its 304.
        """
        prior = self.crawl_state.get(response.url)
        if prior is None or prior.fingerprint != fingerprint(response.body):
            return True
        self.crawler.stats.inc_value(f"flywheel/unchanged/{kind}_same_fingerprint")
        validators = self._validators(response)
        if validators != (prior.etag, prior.last_modified):
            prior.etag, prior.last_modified = validators
            self.crawl_state.put_many([prior])
        return False

    @staticmethod
    def _validators(response: Response) -> tuple[str | None, str | None]:
        etag = response.headers.get("ETag")
        modified = response.headers.get("Last-Modified")
        return (etag.decode("latin-1") if etag else None, modified.decode("latin-1") if modified else None)

    def _links(self, response: TextResponse) -> list[scrapy.Request]:
        requests = []
        for href in response.css("a::attr(href)").getall():
            url = response.urljoin(href.strip())
            if url in self._hrefs_followed:  # its page is requested (or waits in the backlog) already
                continue
            if urlsplit(url).scheme in ("http", "https"):
                request = self.page_request(url)
                if request is not None:
                    requests.append(request)
        return requests

    def _images(self, response: TextResponse) -> list[scrapy.Request]:
        found: list[tuple[str, str | None, str | None, str | None]] = []
        # The incremental state records every image a page shows; without it an image already requested needs
        # neither its request nor its alt, caption and context again.
        every = self.crawl_state.enabled
        for node in response.css("img, picture source"):
            urls = [node.attrib["src"]] if node.attrib.get("src") else []
            urls += parse_srcset(node.attrib.get("srcset", ""))
            if not every:
                urls = [url for url in urls if response.urljoin(url.strip()) not in self._image_refs_requested]
            if not urls:
                continue
            if node.root.tag == "img":
                alt = clean_text(node.attrib.get("alt"))
            else:
                alt = clean_text(node.xpath("ancestor::picture[1]//img/@alt").get())
            caption = clean_text(" ".join(node.xpath("ancestor::figure[1]/figcaption//text()").getall()))
            context = surrounding_text(node)
            found += [(url, alt, caption, context) for url in urls]
        # Open Graph / Twitter card images: the picture a page chose to represent itself (one query for all the
        # card's tags: a query per tag was 6 of a page's ~20 XPath evaluations)
        metas = [node.attrib for node in response.xpath(_CARD_IMAGE_META)]
        og_alt = clean_text(next((m["content"] for m in metas if m.get("property") == "og:image:alt"), None))
        for prop in _CARD_IMAGE_PROPERTIES:
            for meta in metas:
                if prop in (meta.get("property"), meta.get("name")):
                    found.append((meta["content"], og_alt, None, None))
        requests = []
        for url, alt, caption, context in found:
            url = url.strip()
            if not url or url.startswith("data:"):
                continue
            absolute = response.urljoin(url)
            if urlsplit(absolute).scheme not in ("http", "https"):
                continue
            request = self.image_request(absolute, response.url, alt, caption, context)
            if request is not None:
                requests.append(request)
                self._image_refs_requested.add(absolute)  # parse() yields every request it gets from here
        return requests

    def _feed_requests(self, response: TextResponse) -> Iterator[scrapy.Request]:
        """RSS/Atom feeds a page announces (<link rel="alternate">): their entries are seeds, like sitemaps."""
        for link in response.css('link[rel="alternate"]'):
            if (link.attrib.get("type") or "").lower() in _FEED_TYPES and link.attrib.get("href"):
                request = self.sitemap_request(response.urljoin(link.attrib["href"]))
                if request is not None:
                    yield request

    def parse_sitemap(self, response: Response) -> Iterator[scrapy.Request]:
        """Sitemap, sitemap index, RSS or Atom: the page URLs it lists become requests (nested sitemaps followed)."""
        self._account(response)
        body = response.body
        if body[:2] == b"\x1f\x8b":
            try:
                body = gunzip(body, max_size=self.page_maxsize)
            except Exception as exc:  # truncated, corrupt, or over the cap: a decompression bomb stops here
                self.note("skipped/bad_sitemap", response.url, f"gunzip: {exc}")
                return
        try:
            sitemap = Sitemap(body)
        except Exception:
            sitemap = None
        if sitemap is not None and sitemap.type in ("urlset", "sitemapindex"):
            for entry in sitemap:
                loc = entry.get("loc")
                if not loc:
                    continue
                if sitemap.type == "sitemapindex":
                    request = self.sitemap_request(loc)
                else:
                    request = self.page_request(loc, seed="sitemap")
                if request is not None:
                    yield request
            return
        feed = scrapy.Selector(text=body.decode("utf-8", "replace"), type="xml")
        feed.remove_namespaces()
        links = feed.xpath("//item/link/text()").getall() + feed.xpath("//entry/link/@href").getall()
        if not links:
            self.note("skipped/bad_sitemap", response.url, "neither a sitemap nor a feed")
        for link in links:
            request = self.page_request(response.urljoin(link.strip()), seed="feed")
            if request is not None:
                yield request

    def parse_image(
        self,
        response: Response,
        page_url: str,
        alt_text: str | None,
        caption: str | None,
        context_text: str | None = None,
    ) -> Iterator[ImageItem]:
        self._account(response)
        if response.status == 304:
            self.crawler.stats.inc_value("flywheel/unchanged/image_304")
            return
        mime = sniff_mime(response.body)
        if mime is None:
            content_type = (response.headers.get("Content-Type") or b"none").decode("latin-1")[:80]
            self.note("skipped/not_an_image", response.url, f"Content-Type {content_type}, bytes are no known image")
            return
        if self._changed(response, "image"):
            etag, last_modified = self._validators(response)
            yield ImageItem(
                response.url,
                page_url,
                response.body,
                alt_text,
                caption,
                datetime.now(UTC),
                etag,
                last_modified,
                context_text=context_text,
            )
