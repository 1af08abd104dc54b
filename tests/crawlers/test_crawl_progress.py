"""Live crawl progress: the child's counts reach the parent while it crawls, only grow, and end at the report."""

from __future__ import annotations

from itertools import pairwise

import pytest

from crawlers.config import CrawlConfig
from crawlers.progress import PROGRESS_NAME, describe_progress, progress_counts, read_progress, write_progress
from crawlers.run import crawl
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer


def test_progress_file_round_trips_and_reads_as_none_before_the_first_write(tmp_path):
    path = tmp_path / PROGRESS_NAME
    assert read_progress(path) is None
    counts = {"pages": 120, "images": 340, "refused": 3, "errors": 2, "bytes": 2_100_000}
    write_progress(path, counts)
    assert read_progress(path) == counts
    assert not list(tmp_path.glob("*.tmp"))
    assert describe_progress(counts) == "crawl: 120 pages, 340 images, 3 refused, 2 errors, 2.1 MB"


def test_progress_counts_sum_refusals_and_errors_of_a_report():
    report = {
        "pages": 4,
        "images": 9,
        "robots_denied": 1,
        "ssrf_refused": {"loopback": 2},
        "offsite_filtered": 3,
        "errors": {"http/404": 2, "timeout": 1},
        "bytes": {"downloaded": 5000},
    }
    assert progress_counts(report) == {"pages": 4, "images": 9, "refused": 6, "errors": 3, "bytes": 5000}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("site")
    generate_site(out, seed=5, images_per_class=6)
    with SiteServer(out / "site") as server:
        yield server


def test_a_crawl_reports_growing_counts_while_it_runs_and_ends_at_its_report(site, tmp_path):
    config = CrawlConfig(
        start_url=site.url + "/index.html", source="sample-site", timeout_s=120, allowed_private_hosts=[site.url]
    )
    seen: list[dict[str, int]] = []
    # One request at a time, 30 ms apart: a crawl of a few seconds, so a 0.1 s timer fires many times.
    settings = {"FLYWHEEL_PROGRESS_INTERVAL_S": "0.1", "CONCURRENT_REQUESTS": "1", "DOWNLOAD_DELAY": "0.03"}
    settings["AUTOTHROTTLE_ENABLED"] = "False"
    report = crawl(config, tmp_path / "raw", crawl_run="run-p", settings=settings, on_progress=seen.append)
    assert len(seen) >= 3, seen
    for before, after in pairwise(seen):
        assert before != after
        assert all(after[key] >= before[key] for key in before), (before, after)
    assert seen[-1] == progress_counts(report)
    assert seen[-1]["pages"] == report["pages"] > 0 and seen[-1]["images"] == report["images"] > 0
    assert seen[-1]["refused"] >= report["robots_denied"] > 0  # the sample site's robots.txt-disallowed page
    assert seen[0]["pages"] + seen[0]["images"] < report["records"]  # the first update came mid-crawl
    assert not (tmp_path / "raw" / PROGRESS_NAME).exists()
