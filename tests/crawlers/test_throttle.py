"""The throttle: 404s neither raise a host's delay nor stop it recovering; 429/503 back off; Crawl-delay is a floor."""

from __future__ import annotations

import pytest
from broken_links_site import BUSY_PATH, MISSING, NOT_FOUND_LATENCY_S, PAGES, BrokenLinksServer, page_path
from scrapy.core.downloader import Slot
from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from crawlers.config import CrawlConfig
from crawlers.politeness import CrawlDelayThrottle, retry_after_s
from crawlers.run import crawl

pytestmark = pytest.mark.timeout(60)

SETTINGS = {
    "AUTOTHROTTLE_ENABLED": True,
    "AUTOTHROTTLE_START_DELAY": 0.1,
    "AUTOTHROTTLE_MAX_DELAY": 10.0,
    "AUTOTHROTTLE_TARGET_CONCURRENCY": 4.0,
    "DOWNLOAD_DELAY": 0,
    "FLYWHEEL_MAX_CRAWL_DELAY": 60.0,
}
URL = "http://site.test/"
FAST, SLOW = 0.004, 0.4  # latencies (s): a cached article, a 404 page the CMS renders


def _throttle(cls: type[AutoThrottle] = CrawlDelayThrottle) -> AutoThrottle:
    throttle = cls(get_crawler(settings_dict=SETTINGS))
    throttle.mindelay, throttle.maxdelay = throttle._min_delay(), throttle._max_delay()
    return throttle


def _feed(throttle: AutoThrottle, slot: Slot, answers: list[tuple[int, float]], **headers: str) -> list[float]:
    """The slot's delay after each (status, latency) answer."""
    delays = []
    for status, latency in answers:
        throttle._adjust_delay(slot, latency, Response(URL, status=status, headers=headers))
        delays.append(slot.delay)
    return delays


# one article to three links, one of them broken: what the crawl of the issue's site met, in order
BROKEN_SITE = [(200, FAST), (404, SLOW), (200, FAST)] * 20


def test_stock_autothrottle_is_ratcheted_up_by_slow_404s() -> None:
    """The mechanism behind the issue: a non-200 may raise the delay and never lower it, a 200 only halves the gap."""
    slot = Slot(8, 0.1)
    delays = _feed(_throttle(AutoThrottle), slot, BROKEN_SITE)
    assert min(delays[-30:]) > SLOW / 4 / 4  # never back below a quarter of what each slow 404 set
    assert delays[-2] == pytest.approx(SLOW / 4)  # every 404 puts it back at its latency / target concurrency


def test_404s_neither_raise_the_delay_nor_stop_its_recovery() -> None:
    throttle = _throttle()
    slot = Slot(8, 0.1)
    delays = _feed(throttle, slot, BROKEN_SITE)
    assert all(later <= earlier for earlier, later in zip([0.1, *delays], delays, strict=False))
    assert delays[-1] == pytest.approx(FAST / 4, rel=0.01)
    # a stretch of nothing but 404s: slow ones (latency / 4 above the delay) leave it, fast ones still lower it
    slot.delay = 0.05
    assert _feed(throttle, slot, [(404, SLOW)] * 5) == [0.05] * 5
    assert _feed(throttle, slot, [(404, FAST)] * 16)[-1] == pytest.approx(FAST / 4, rel=0.01)
    assert "flywheel/throttle/raised/404" not in throttle.crawler.stats.get_stats()


def test_429_and_503_back_off_and_the_delay_recovers() -> None:
    throttle = _throttle()
    slot = Slot(8, 0.0)
    assert _feed(throttle, slot, [(429, FAST)]) == [0.1]  # from no delay: the start delay
    assert _feed(throttle, slot, [(503, FAST), (429, FAST)]) == [0.2, 0.4]
    assert _feed(throttle, slot, [(429, FAST)] * 10)[-1] == 10.0  # AUTOTHROTTLE_MAX_DELAY
    assert _feed(throttle, slot, [(200, FAST)] * 20)[-1] < 0.01
    assert _feed(throttle, slot, [(503, FAST)], **{"Retry-After": "3"}) == [3.0]
    stats = throttle.crawler.stats.get_stats()
    assert stats["flywheel/throttle/backoff/429"] == 12 and stats["flywheel/throttle/backoff/503"] == 2
    assert stats["flywheel/throttle/max_delay_ms"] == 10000.0


def test_server_errors_keep_the_stock_rule_and_crawl_delay_stays_a_floor() -> None:
    throttle = _throttle()
    slot = Slot(8, 0.1)
    assert _feed(throttle, slot, [(500, FAST)]) == [0.1]  # may not lower
    assert _feed(throttle, slot, [(502, 2.0)]) == [0.5]  # may raise
    throttle.crawl_delays["site.test"] = 0.3
    assert _feed(throttle, slot, [(200, FAST)] * 10)[-1] == 0.3
    assert _feed(throttle, slot, [(404, FAST)])[-1] == 0.3


def test_retry_after() -> None:
    assert retry_after_s(Response(URL, status=429, headers={"Retry-After": "120"})) == 120.0
    assert retry_after_s(Response(URL, status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_s(Response(URL, status=503, headers={"Retry-After": "soon"})) is None
    assert retry_after_s(Response(URL, status=503)) is None


def test_a_crawl_where_a_third_of_the_links_404(tmp_path) -> None:
    """A real crawl: every page is fetched, no 404 ever raised the delay, the one 429 backed off and it recovered."""
    with BrokenLinksServer() as server:
        config = CrawlConfig(
            start_url=server.url + page_path(0),
            source="broken",
            allowed_private_hosts=[server.url],
            timeout_s=50,
            fetch_images=False,
        )
        report = crawl(config, tmp_path / "run", crawl_run="broken")
        hits = dict(server.hits)
    assert report["pages"] == PAGES + 1  # the articles and /busy.html, served on its retry
    assert report["status_codes"]["404"] == MISSING and hits[BUSY_PATH] == 2
    # a 404 is an answer, not a fault: each missing page was asked for once, never retried
    gone = {path: n for path, n in hits.items() if path.startswith("/gone/")}
    assert len(gone) == MISSING and set(gone.values()) == {1}
    assert report["status_codes"]["404"] >= report["responses"] / 4
    throttle = report["throttle"]
    assert "404" not in throttle["raised"]
    assert throttle["backoff"] == {"429": 1} and throttle["max_delay_ms"] >= 100  # at least AUTOTHROTTLE_START_DELAY
    # recovered: later articles took the delay back down, far below both the backoff and what a 404 would set
    (last,) = throttle["delay_ms"].values()
    assert last < throttle["max_delay_ms"] / 2
    assert 0 < throttle["mean_delay_ms"] < throttle["max_delay_ms"]  # one backoff among many small delays
    assert NOT_FOUND_LATENCY_S > 0
