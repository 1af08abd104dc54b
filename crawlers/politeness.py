"""Politeness: robots.txt read up to RFC 9309's size, and AutoThrottle that never goes below its Crawl-delay."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, signals
from scrapy.core.downloader import Slot
from scrapy.crawler import Crawler
from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Response
from scrapy.robotstxt import ProtegoRobotParser

logger = logging.getLogger(__name__)


class CappedRobotParser(ProtegoRobotParser):
    """Scrapy's Protego parser over the first FLYWHEEL_ROBOTSTXT_MAXSIZE bytes of robots.txt, cut after a whole line.

    RFC 9309 §2.5: a parser must handle at least 500 KiB and may ignore what follows. Uncut, a robots.txt of a
    few MB (150,000 rules) took seconds to parse and over 100 ms per URL check, on every request to its host.
    """

    @classmethod
    def from_crawler(cls, crawler: Crawler, robotstxt_body: bytes) -> CappedRobotParser:
        cap = crawler.settings.getint("FLYWHEEL_ROBOTSTXT_MAXSIZE")
        if cap and len(robotstxt_body) > cap:
            head = robotstxt_body[:cap]
            # a rule cut mid-line could mean something else (Disallow: /private -> Disallow: /pri)
            end = max(head.rfind(b"\n"), head.rfind(b"\r"))
            logger.warning(
                "a robots.txt of %d bytes: only its first %d (whole lines) are read, as RFC 9309 allows",
                len(robotstxt_body),
                end + 1,
            )
            crawler.stats.inc_value("flywheel/skipped/robots_txt_tail")
            robotstxt_body = head[: end + 1]
        return cls(robotstxt_body, crawler.spider)


class CrawlDelayThrottle(AutoThrottle):
    """AutoThrottle with a per-host floor: the Crawl-delay robots.txt asks of our user agent.

    A Crawl-delay above FLYWHEEL_MAX_CRAWL_DELAY is cut to it (and logged): a hostile or careless
    robots.txt could otherwise stall the crawl for days; the site still gets that much spacing.
    """

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self.max_crawl_delay = crawler.settings.getfloat("FLYWHEEL_MAX_CRAWL_DELAY")
        self.user_agent = crawler.settings.get("ROBOTSTXT_USER_AGENT") or crawler.settings.get("USER_AGENT")
        self.crawl_delays: dict[str, float] = {}
        crawler.signals.connect(self._robots_parsed, signal=signals.robots_parsed)

    def _robots_parsed(self, robotparser: Any, request: Request) -> None:
        crawl_delay = getattr(robotparser, "crawl_delay", None)
        delay = crawl_delay(self.user_agent) if crawl_delay else None
        host = urlsplit(request.url).hostname or ""
        if not delay or delay <= 0:
            return
        if delay > self.max_crawl_delay:
            logger.warning(
                "robots.txt of %s asks for Crawl-delay %.1f s; capped at %.1f s", host, delay, self.max_crawl_delay
            )
            delay = self.max_crawl_delay
        self.crawl_delays[host] = delay
        self.crawler.stats.set_value(f"flywheel/crawl_delay/{host}", delay)
        logger.info("robots.txt of %s: Crawl-delay %.2f s honoured", host, delay)
        slot = self.crawler.engine.downloader.slots.get(host) if self.crawler.engine else None
        if slot is not None:
            slot.delay = max(slot.delay, delay)

    def _adjust_delay(self, slot: Slot, latency: float, response: Response) -> None:
        super()._adjust_delay(slot, latency, response)
        floor = self.crawl_delays.get(urlsplit(response.url).hostname or "")
        if floor:
            slot.delay = max(slot.delay, floor)
