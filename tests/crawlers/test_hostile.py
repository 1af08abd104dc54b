"""A real crawl of a hostile loopback site: every planted trap bounded, logged with its reason, never fatal; no SSRF."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hostile_site import (
    CRAWL_DELAY,
    IMAGE_CAP,
    PAGE_CAP,
    SECRET_COOKIE,
    SECRET_PASSWORD,
    SSRF_HOSTS,
    HostileServer,
)

from corpus.store import DataRoot
from crawlers.config import CrawlConfig
from crawlers.run import crawl

pytestmark = pytest.mark.timeout(60)

HOSTILE_SETTINGS = {
    "FLYWHEEL_PAGE_MAXSIZE": str(PAGE_CAP),
    "FLYWHEEL_IMAGE_MAXSIZE": str(IMAGE_CAP),
    "DOWNLOAD_TIMEOUT": "1",
    "RETRY_ENABLED": "False",
    "LOG_LEVEL": "DEBUG",
    # the project's SSRF guard, plus a tripwire just before the network that refuses anything non-loopback
    "DOWNLOADER_MIDDLEWARES": json.dumps(
        {"crawlers.netguard.SsrfGuardMiddleware": 60, "tests.crawlers.hostile_site.TripwireMiddleware": 949}
    ),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    output = tmp_path_factory.mktemp("hostile") / "run"
    with HostileServer() as server:
        config = CrawlConfig(
            start_url=server.url + "/index.html",
            source="hostile",
            allowed_domains=["127.0.0.1", *SSRF_HOSTS],
            allowed_private_hosts=[server.url],
            timeout_s=45,
            max_pages_per_template=5,
        )
        report = crawl(config, output, crawl_run="hostile", settings=HOSTILE_SETTINGS)
        hits = list(server.hits)
    rows = DataRoot(str(output)).read_table("").to_pylist()
    log = (output / "_crawl.log").read_text(errors="replace")
    return report, rows, log, output, hits


def _by_path(rows: list[dict]) -> dict[str, dict]:
    return {urlsplit(r["url"]).path: r for r in rows}


def test_the_crawl_survives_and_finishes(hostile):
    report, _, log, _, _ = hostile
    assert report["finish_reason"] == "finished"
    assert "Traceback" not in log
    assert report["pages"] >= 10


def test_redirects_to_internal_addresses_are_refused_by_the_guard(hostile):
    report, _, log, _, hits = hostile
    assert report["ssrf_refused"] == {"loopback": 1, "metadata": 1, "private": 1}
    for target in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.1/admin", "http://localhost:"):
        assert f"SSRF guard refused {target}" in log
    assert "resolved from localhost" in log
    # the guard decided: the tripwire in front of the network never saw them
    assert "TRIPWIRE" not in log
    assert {"/to-metadata", "/to-private", "/to-localhost"} <= set(hits)


def test_endless_redirects_stop_at_the_limit(hostile):
    report, _, log, _, hits = hostile
    assert report["errors"]["redirect/too_many"] == 1
    assert "errors/redirect/too_many: " in log
    assert max(int(h.rsplit("/", 1)[1]) for h in hits if h.startswith("/redirect/")) == 5  # REDIRECT_MAX_TIMES


def test_huge_bodies_and_gzip_bombs_are_cut_at_the_caps(hostile):
    report, rows, log, _, _ = hostile
    paths = _by_path(rows)
    # /huge.html (announced), /huge-chunked.html (streamed), /img/huge.jpg
    assert report["errors"]["size/too_large"] == 3
    # /bomb.html and /img/bomb.png: 64 MiB of zeros stop at the cap while decompressing
    assert report["errors"]["size/decompressed_too_large"] == 2
    assert not {"/huge.html", "/huge-chunked.html", "/bomb.html", "/img/huge.jpg", "/img/bomb.png"} & set(paths)
    assert "larger than download max size" in log and "during decompression" in log


def test_slow_drip_times_out(hostile):
    report, rows, log, _, _ = hostile
    assert report["errors"]["timeout"] == 1
    assert "errors/timeout: " in log and "drip.html" in log
    assert "/drip.html" not in _by_path(rows)


def test_content_type_is_sniffed_from_the_bytes(hostile):
    report, rows, log, _, _ = hostile
    paths = _by_path(rows)
    assert paths["/wrong-type.png"]["kind"] == "text" and paths["/wrong-type.png"]["title"] == "Served as PNG"
    assert paths["/no-type"]["kind"] == "text"
    assert "/json-as-html.html" not in paths and report["skipped"]["not_html"] == 1
    assert "skipped/not_html: " in log and "body is not HTML" in log
    # an "image" that is HTML is dropped; a PNG served as text/plain is kept as a PNG
    assert "/img/fake.jpg" not in paths and report["skipped"]["not_an_image"] == 1
    assert paths["/img/real.bin"]["mime"] == "image/png" and paths["/img/real.bin"]["alt_text"] == "png as text"
    assert report["corrected"]["html_content_type"] == 1  # /wrong-type.png (Content-Type image/png)


def test_open_graph_image_with_its_alt(hostile):
    _, rows, _, _, _ = hostile
    og = _by_path(rows)["/img/og.png"]
    assert og["kind"] == "image" and og["alt_text"] == "Open Graph alt"
    assert og["page_url"].endswith("/images.html")


def test_invalid_encoding_and_malformed_html_still_give_records(hostile):
    _, rows, _, _, _ = hostile
    paths = _by_path(rows)
    assert paths["/bad-encoding.html"]["title"] == "Bad bytes"
    assert "invalid utf-8" in paths["/bad-encoding.html"]["text"]
    assert "Unclosed" in paths["/malformed.html"]["text"]


def test_query_order_and_tracking_duplicates_are_one_page(hostile):
    _, rows, _, _, _ = hostile
    queries = [r["url"] for r in rows if urlsplit(r["url"]).path == "/q"]
    assert len(queries) == 1 and queries[0].endswith("/q?a=1&b=2")


def test_infinite_calendar_is_bounded_by_the_template_budget(hostile):
    report, rows, log, _, _ = hostile
    months = [r for r in rows if urlsplit(r["url"]).path.startswith("/calendar/")]
    assert len(months) == 5  # max_pages_per_template
    assert report["out_of_scope"]["template_budget"] >= 1
    assert "out_of_scope/template_budget: " in log


def test_no_secret_reaches_output_or_logs(hostile):
    _, rows, _, output, _ = hostile
    echoes = [r for r in rows if urlsplit(r["url"]).path == "/echo"]
    assert len(echoes) == 3
    # cookies are off: the Set-Cookie of the first visit never comes back; URL credentials are dropped
    assert all("cookie=None authorization=None" in r["text"] for r in echoes)
    for path in Path(output).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET_COOKIE.encode() not in data, path
            assert SECRET_PASSWORD.encode() not in data, path


def test_robots_crawl_delay_sitemaps_and_feeds(hostile):
    report, rows, _, _, _ = hostile
    assert report["crawl_delays"] == {"127.0.0.1": CRAWL_DELAY}
    paths = _by_path(rows)
    assert "/from-sitemap.html" in paths and "/from-feed.html" in paths
    assert report["seeds"]["sitemap"] == 1 and report["seeds"]["feed"] == 1


def test_without_an_allow_list_loopback_is_refused_before_any_traffic(tmp_path):
    with HostileServer() as server:
        config = CrawlConfig(start_url=server.url + "/index.html", source="s", timeout_s=30)
        report = crawl(config, tmp_path / "run", crawl_run="r")
        hits = list(server.hits)
    assert hits == []  # not even robots.txt
    assert report["pages"] == 0 and report["ssrf_refused"] == {"loopback": 1}
    log = (tmp_path / "run" / "_crawl.log").read_text()
    assert f"SSRF guard refused {server.url}/index.html: loopback address 127.0.0.1" in log


def test_the_allow_list_opens_one_origin_not_the_host(tmp_path):
    """Allowing one loopback site opens no other port (or scheme) of 127.0.0.1 to its links and redirects."""
    with HostileServer() as neighbour, HostileServer(neighbour_url=neighbour.url) as site:
        config = CrawlConfig(
            start_url=site.url + "/ports.html", source="s", allowed_private_hosts=[site.url], timeout_s=30
        )
        report = crawl(config, tmp_path / "run", crawl_run="r", settings=HOSTILE_SETTINGS)
        hits = list(site.hits)
    assert neighbour.connections == 0 and neighbour.hits == []  # not one connection, not robots.txt
    assert {"/robots.txt", "/ports.html", "/to-neighbour", "/q?a=1"} <= set(hits)
    # the link, the redirect target, the image, and the site's own port under https
    assert report["ssrf_refused"] == {"loopback": 4}
    log = (tmp_path / "run" / "_crawl.log").read_text()
    for url in ("/linked.html", "/redirected.html", "/img.png"):
        assert f"SSRF guard refused {neighbour.url}{url}: loopback address 127.0.0.1" in log
    assert f"SSRF guard refused https://127.0.0.1:{site.server_address[1]}/other-scheme.html" in log


def test_the_resolver_refuses_on_its_own(tmp_path):
    """Defence in depth: with the middleware switched off, the DNS resolver still refuses localhost."""
    settings = {
        **HOSTILE_SETTINGS,
        "DOWNLOADER_MIDDLEWARES": json.dumps({"tests.crawlers.hostile_site.TripwireMiddleware": 949}),
    }
    with HostileServer() as server:
        config = CrawlConfig(
            start_url=server.url + "/to-localhost",
            source="s",
            allowed_domains=["127.0.0.1", "localhost"],
            allowed_private_hosts=[server.url],
            timeout_s=30,
        )
        report = crawl(config, tmp_path / "run", crawl_run="r", settings=settings)
        hits = list(server.hits)
    # Twisted reports the refusal as a failed lookup; the resolver's own counter says why
    assert report["errors"] == {"dns": 1}
    assert report["ssrf_refused"]["loopback"] >= 1
    assert "/index.html" not in hits  # the redirect target was never fetched
    log = (tmp_path / "run" / "_crawl.log").read_text()
    assert "SSRF guard (resolver) refused localhost: loopback address 127.0.0.1" in log
