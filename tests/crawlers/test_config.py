"""The crawl config model: validation, allow-list origins, and the one JSON form the Scrapy child reads back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from scrapy.settings import Settings

from crawlers.config import CrawlConfig, CrawlJob, parse_origin
from crawlers.run import build_command

pytestmark = pytest.mark.timeout(10)

START = "http://127.0.0.1:8765/index.html"


def test_defaults_and_bounds() -> None:
    config = CrawlConfig(start_url=START)
    assert (config.source, config.max_pages, config.max_bytes, config.timeout_s) == ("site", 2000, None, 1800)
    assert config.fetch_images and not config.incremental and config.trailing_slash == "keep"
    for bad in ({"max_pages": 0}, {"max_bytes": 0}, {"timeout_s": 0}, {"trailing_slash": "add"}, {"max_page": 3}):
        with pytest.raises(ValidationError):
            CrawlConfig(start_url=START, **bad)


@pytest.mark.parametrize(
    ("entry", "origin"),
    [
        ("127.0.0.1", "http://127.0.0.1:8765"),  # a bare host: the start URL's scheme and port
        ("::1", "http://[::1]:8765"),
        ("[::1]", "http://[::1]:8765"),
        ("Demo.Local", "http://demo.local:8765"),
        ("localhost:9000", "http://localhost:9000"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
        ("HTTP://127.0.0.1:8765/", "http://127.0.0.1:8765"),
        ("http://127.0.0.1", "http://127.0.0.1:80"),
        ("https://[::1]", "https://[::1]:443"),
        ("https://intranet.example.:8443", "https://intranet.example:8443"),
    ],
)
def test_allow_list_entries_become_origins(entry: str, origin: str) -> None:
    assert CrawlConfig(start_url=START, allowed_private_hosts=[entry]).allowed_private_hosts == [origin]


@pytest.mark.parametrize(
    "entry",
    ["", "ftp://127.0.0.1:21", "http://127.0.0.1:8765/admin", "http://user@127.0.0.1:8765", "http://h:99999", "?x"],
)
def test_allow_list_entries_that_are_no_origin_are_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="allow-list entry"):
        CrawlConfig(start_url=START, allowed_private_hosts=[entry])


def test_bare_hosts_follow_the_start_urls_scheme_and_port() -> None:
    https = CrawlConfig(start_url="https://intranet.example/", allowed_private_hosts=["intranet.example"])
    assert https.allowed_private_hosts == ["https://intranet.example:443"]
    assert parse_origin("10.0.0.7", default_scheme="http", default_port=80) == "http://10.0.0.7:80"


def test_the_job_travels_as_one_setting_and_reads_back_equal() -> None:
    config = CrawlConfig(
        start_url=START,
        source="demo",
        include=[r"/gallery/", r"a,b"],
        exclude=[r"\?sort=[^&]+"],
        sitemap_urls=["http://127.0.0.1:8765/sitemap.xml"],
        allowed_domains=["127.0.0.1"],
        allowed_private_hosts=["127.0.0.1"],
        max_bytes=10_000,
        incremental=True,
        fetch_images=False,
    )
    job = CrawlJob(config=config, crawl_run="crawl-1", output_dir="/data/raw/crawl-1", state_path="/s/demo.sqlite")
    cmd = build_command(job, settings={"LOG_LEVEL": "DEBUG"})
    assert "-a" not in cmd  # no option is spelled out on its own any more
    settings = dict(arg.split("=", 1) for arg in cmd[cmd.index("-s") + 1 :: 2])
    assert set(settings) == {CrawlJob.SETTING, "LOG_LEVEL"}
    assert CrawlJob.from_settings(Settings(settings)) == job


def test_a_crawl_without_a_job_is_refused() -> None:
    with pytest.raises(ValueError, match="set FLYWHEEL_CRAWL_JOB"):
        CrawlJob.from_settings(Settings({}))
