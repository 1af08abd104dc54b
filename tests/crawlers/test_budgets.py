"""Budgets on real loopback sites: the page budget stops scheduling; robots.txt is read up to RFC 9309's cap."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_site import WideServer, big_robots_txt
from scrapy.utils.test import get_crawler

from crawlers.config import CrawlConfig
from crawlers.politeness import CappedRobotParser
from crawlers.run import crawl

pytestmark = pytest.mark.timeout(60)


def _page_hits(hits: list[str]) -> list[str]:
    return [h for h in hits if h == "/index.html" or h.startswith(("/p/", "/private/"))]


def _crawl(server: WideServer, output: Path, **options: object) -> dict:
    config = CrawlConfig(
        start_url=server.url + "/index.html", source="wide", allowed_private_hosts=[server.url], timeout_s=45, **options
    )
    return crawl(config, output, crawl_run=output.name, settings={"RETRY_ENABLED": "False"})


def test_pages_over_the_budget_are_never_requested(tmp_path: Path) -> None:
    with WideServer(pages=400, missing=10) as server:
        report = _crawl(server, tmp_path / "run", max_pages=30)
        hits = list(server.hits)
    assert report["pages"] == 30
    # every page fetched was kept: none downloaded and thrown away over the budget
    assert len(_page_hits(hits)) == 30 == len(set(_page_hits(hits)))
    assert report["pages_over_budget"] == 0 and report["skipped"]["page_budget"] >= 1
    # dead links gave their slots back: 404s were fetched and the budget was still filled with pages
    assert report["errors"]["http/404"] >= 1
    assert report["errors"]["http/404"] == len([h for h in hits if h.startswith("/missing/")])


def test_a_budget_above_the_site_crawls_all_of_it_once(tmp_path: Path) -> None:
    with WideServer(pages=60, missing=3) as server:
        report = _crawl(server, tmp_path / "run", max_pages=1000)
        hits = list(server.hits)
    assert report["pages"] == 61 and len(_page_hits(hits)) == 61  # the index and every page, robots obeyed
    assert "/private/secret.html" not in hits
    assert "page_budget" not in report["skipped"]


def test_a_huge_robots_txt_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    robots = big_robots_txt()
    assert len(robots) > 3_000_000
    with WideServer(pages=20, missing=0, robots=robots) as server:
        report = _crawl(server, tmp_path / "run")
        hits = list(server.hits)
    assert report["skipped"]["robots_txt_tail"] == 1
    # the rule before the cap holds; "Disallow: /p/", past it, is ignored
    assert "/private/secret.html" not in hits and report["robots_denied"] == 1
    assert report["pages"] == 21
    log = (tmp_path / "run" / "_crawl.log").read_text()
    assert f"a robots.txt of {len(robots)} bytes: only its first" in log


def test_the_cap_cuts_after_a_whole_line() -> None:
    crawler = get_crawler(settings_dict={"FLYWHEEL_ROBOTSTXT_MAXSIZE": 40})
    body = b"User-agent: *\nDisallow: /a/\nDisallow: /bcdefghijklmn\nDisallow: /\n"
    assert body.index(b"/bcd") < 40 < body.index(b"mn\n")  # the cap falls inside the /bcd... rule
    parser = CappedRobotParser.from_crawler(crawler, body)
    assert not parser.allowed("http://h/a/x", "FlywheelBot")
    assert parser.allowed("http://h/b", "FlywheelBot")  # a cut rule would read "Disallow: /b"
    assert parser.allowed("http://h/z", "FlywheelBot")  # "Disallow: /", past the cap, is ignored
    assert crawler.stats.get_value("flywheel/skipped/robots_txt_tail") == 1
    whole = CappedRobotParser.from_crawler(get_crawler(settings_dict={"FLYWHEEL_ROBOTSTXT_MAXSIZE": 4096}), body)
    assert not whole.allowed("http://h/z", "FlywheelBot")
