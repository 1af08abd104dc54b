"""Politeness: robots.txt read up to RFC 9309's size, and an AutoThrottle that honours Crawl-delay, backs off on
429/503 and is not ratcheted up by a site's broken links."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
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


# "Slow down" answers: 429 Too Many Requests (RFC 6585 §4) and 503 Service Unavailable (RFC 9110 §15.6.4), the
# two that may carry Retry-After for exactly this purpose.
BACKOFF_STATUSES = frozenset({429, 503})
# Answers of a healthy server: their latency is a fair sample of its load, up or down.
_HEALTHY_STATUSES = frozenset({200, 203, 204, 206, 304})


def retry_after_s(response: Response) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or an HTTP-date, RFC 9110 §10.2.3); None if absent/bad."""
    value = (response.headers.get("Retry-After") or b"").decode("latin-1").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class CrawlDelayThrottle(AutoThrottle):
    """AutoThrottle with three changes to how a response moves its host's delay.

    - Crawl-delay is a per-host floor: the delay robots.txt asks of our user agent. One above
      FLYWHEEL_MAX_CRAWL_DELAY is cut to it (and logged): a hostile or careless robots.txt could otherwise
      stall the crawl for days; the site still gets that much spacing.
    - 429 and 503 back off: the delay doubles (at least AUTOTHROTTLE_START_DELAY, at least Retry-After), up to
      AUTOTHROTTLE_MAX_DELAY. Stock AutoThrottle only reads their latency, which is usually short.
    - Other error answers (3xx, 4xx) may lower the delay but never raise it. Stock AutoThrottle does the opposite
      for every non-200: their latency may raise the delay and may never lower it, so on a site where most links
      404 (a slow 404 page rendered by the CMS, fast cached articles) each slow 404 pushes the delay up to its
      latency / AUTOTHROTTLE_TARGET_CONCURRENCY and the few 200s cannot pull it back: a real crawl of 481
      articles fell from ~1,100 to ~150 responses a minute. A 404 is no sign of load. Other 5xx keep the stock
      rule (may raise, never lower): an erroring server is the one to be careful with.

    In the stats (the report's `throttle`): `raised/<status>` (responses that raised the delay),
    `backoff/<status>`, `max_delay_ms` (the highest delay a response set), `delay_ms/<host>` (the last) and
    `adjustments` / `delay_total_ms` (for the report's mean delay).
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

    def _latency_delay(self, old: float, latency: float) -> float:
        """Stock AutoThrottle's step: towards latency / target concurrency, at once when that is higher."""
        target = latency / self.target_concurrency
        return min(max(self.mindelay, target, (old + target) / 2.0), self.maxdelay)

    def _adjust_delay(self, slot: Slot, latency: float, response: Response) -> None:
        old = slot.delay
        status = response.status
        step = self._latency_delay(old, latency)
        if status in BACKOFF_STATUSES:
            wanted = max(2 * old, self._start_delay(), retry_after_s(response) or 0.0)
            slot.delay = min(wanted, self.maxdelay)
            self.crawler.stats.inc_value(f"flywheel/throttle/backoff/{status}")
        elif status in _HEALTHY_STATUSES:
            slot.delay = step
        elif status >= 500:
            slot.delay = max(old, step)  # the stock rule for every non-200
        else:
            slot.delay = min(old, step)
        host = urlsplit(response.url).hostname or ""
        floor = self.crawl_delays.get(host)
        if floor:
            slot.delay = max(slot.delay, floor)
        stats = self.crawler.stats
        if slot.delay > old:
            stats.inc_value(f"flywheel/throttle/raised/{status}")
            stats.max_value("flywheel/throttle/max_delay_ms", round(slot.delay * 1000, 1))
        stats.set_value(f"flywheel/throttle/delay_ms/{host}", round(slot.delay * 1000, 1))
        # the mean delay: when it is near the time between requests, the throttle, not the crawl's CPU, sets the pace
        stats.inc_value("flywheel/throttle/adjustments")
        stats.inc_value("flywheel/throttle/delay_total_ms", slot.delay * 1000)
