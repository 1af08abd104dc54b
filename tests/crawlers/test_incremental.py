"""Incremental recrawls against the sample site's real ETag/304 answers, and JOBDIR resume without duplicates."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from corpus.store import DataRoot
from crawlers.config import CrawlConfig
from crawlers.run import crawl
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gen")
    return out / "site", generate_site(out, seed=3, images_per_class=4)


@pytest.fixture
def site(generated, tmp_path: Path):
    """A private copy of the site (tests edit files), served on loopback."""
    site_dir = tmp_path / "site"
    shutil.copytree(generated[0], site_dir)
    with SiteServer(site_dir) as server:
        yield site_dir, generated[1], server


def _crawl(server: SiteServer, output: Path, *, state_path: Path | None = None, **kwargs):
    config = CrawlConfig(
        start_url=server.url + "/index.html",
        source="sample",
        allowed_private_hosts=[server.url],
        timeout_s=45,
        incremental=state_path is not None,
    )
    return crawl(config, output, crawl_run=output.name, state_path=state_path, **kwargs)


def _paths(output: Path) -> list[str]:
    if not list(output.glob("part-*.parquet")):
        return []
    return [urlsplit(u).path for u in DataRoot(str(output)).read_table("")["url"].to_pylist()]


def _touch_later(path: Path) -> None:
    """Move the mtime a second on, so Last-Modified (1 s resolution) and the ETag both change."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_recrawl_fetches_and_writes_only_what_changed(site, tmp_path: Path):
    site_dir, truth, server = site
    state = tmp_path / "state" / "sample.sqlite"
    first = _crawl(server, tmp_path / "run-1", state_path=state)
    assert first["pages"] > 5 and first["images"] > 10
    assert first["state_urls"] == first["records"]

    # nothing changed: every page and image answers 304, nothing is written, links are still followed
    second = _crawl(server, tmp_path / "run-2", state_path=state)
    assert second["pages"] == 0 and second["images"] == 0 and second["shards"] == 0
    assert second["unchanged"]["page_304"] == first["pages"]
    assert second["unchanged"]["image_304"] == first["images"]
    assert second["status_codes"].get("200", 0) == 1  # robots.txt only

    # one page edited, one image replaced, one page touched with the same bytes
    page = site_dir / "gallery" / "page-002.html"
    page.write_bytes(page.read_bytes().replace(b"</article>", b"<p>A new paragraph.</p></article>"))
    image = sorted(p for p in truth["images"] if p.startswith("/images/img_") and p.endswith(".jpg"))[0]
    donor = sorted(p for p in truth["images"] if p.startswith("/images/img_") and p.endswith(".jpg"))[1]
    shutil.copyfile(site_dir / donor.lstrip("/"), site_dir / image.lstrip("/"))
    for path in (page, site_dir / image.lstrip("/"), site_dir / "gallery" / "page-003.html"):
        _touch_later(path)
    third = _crawl(server, tmp_path / "run-3", state_path=state)
    assert sorted(_paths(tmp_path / "run-3")) == sorted(["/gallery/page-002.html", image])
    # page-003's ETag changed but its bytes did not: fetched, compared by fingerprint, not written
    assert third["unchanged"]["page_same_fingerprint"] == 1

    # ... and its new validators were recorded: the next recrawl gets 304s everywhere again
    fourth = _crawl(server, tmp_path / "run-4", state_path=state)
    assert fourth["records"] == 0 and "page_same_fingerprint" not in fourth["unchanged"]
    assert fourth["unchanged"]["page_304"] == first["pages"]

    # without a state file, the crawl is a full one again
    full = _crawl(server, tmp_path / "run-5")
    assert full["records"] == first["records"]


def test_interrupted_crawl_resumes_without_duplicates(site, tmp_path: Path):
    _, truth, server = site
    output, jobdir = tmp_path / "run", tmp_path / "job"
    stopped = _crawl(server, output, jobdir=jobdir, settings={"CLOSESPIDER_ITEMCOUNT": "8", "CONCURRENT_REQUESTS": "2"})
    assert stopped["finish_reason"] == "closespider_itemcount"
    partial = len(_paths(output))
    resumed = _crawl(server, output, jobdir=jobdir)
    assert resumed["finish_reason"] == "finished"
    paths = _paths(output)
    assert len(paths) > partial
    assert Counter(paths).most_common(1)[0][1] == 1
    disallowed = set(truth["robots_disallowed"])
    expected = {p for p in [*truth["pages"], *truth["images"]] if p not in disallowed} - set(truth["broken_links"])
    assert set(paths) == expected
