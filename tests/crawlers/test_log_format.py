"""The crawl log names items by URL, and builds Scrapy's per-response DEBUG records only when it logs at DEBUG."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from crawlers.items import PageItem
from crawlers.report import UrlOnlyLogFormatter


def test_debug_records_are_built_only_at_debug() -> None:
    request = Request("http://site.test/a.html")
    response = HtmlResponse(request.url, body=b"<html><body>secret text</body></html>", request=request)
    item = PageItem(request.url, response.body, "a", "secret text", datetime.now(UTC))
    for level, built in (("INFO", False), ("WARNING", False), ("DEBUG", True), (logging.DEBUG, True)):
        formatter = UrlOnlyLogFormatter.from_crawler(get_crawler(settings_dict={"LOG_LEVEL": level}))
        crawled = formatter.crawled(request, response, None)
        scraped = formatter.scraped(item, response, None)
        assert (crawled is not None, scraped is not None) == (built, built), level
        if built:
            assert scraped["msg"] == "Scraped %(kind)s %(url)s"
            assert scraped["args"] == {"kind": "PageItem", "url": request.url}  # never the page's text
    quiet = UrlOnlyLogFormatter.from_crawler(get_crawler(settings_dict={"LOG_LEVEL": "DEBUG", "LOG_ENABLED": False}))
    assert quiet.crawled(request, response, None) is None
