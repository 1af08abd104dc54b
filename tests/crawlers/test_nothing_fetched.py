"""A crawl that stored nothing says why in one line: the guard, robots.txt, a silent host, HTTP errors."""

from __future__ import annotations

from crawlers.report import nothing_fetched

URL = "http://example.test/"


def test_a_crawl_that_stored_something_is_not_empty():
    assert nothing_fetched({"pages": 1, "images": 0}, URL) is None
    assert nothing_fetched({"pages": 0, "images": 3}, URL) is None
    assert nothing_fetched({"pages": 0, "images": 0, "unchanged": {"page": 4}}, URL) is None  # incremental


def test_each_reason_is_named():
    guard = nothing_fetched({"pages": 0, "images": 0, "ssrf_refused": {"loopback": 1}}, URL)
    assert guard.startswith(f"the SSRF guard refused {URL} (loopback)")
    robots = nothing_fetched({"pages": 0, "images": 0, "robots_denied": 1}, URL)
    assert robots == f"robots.txt of the host forbids {URL}"
    silent = nothing_fetched({"pages": 0, "images": 0, "errors": {"connection/refused": 1, "dns": 2}}, URL)
    assert silent == f"the host of {URL} did not answer (connection/refused, dns x2)"
    http = nothing_fetched({"pages": 0, "images": 0, "errors": {"http/404": 2}, "status_codes": {"404": 2}}, URL)
    assert http == f"{URL} answered only HTTP 404"
    empty = nothing_fetched({"pages": 0, "images": 0, "status_codes": {"200": 1}}, URL)
    assert "no HTML page or image" in empty
