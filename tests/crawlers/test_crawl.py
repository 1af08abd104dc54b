"""A real Scrapy crawl of the loopback sample site: every allowed URL once, robots and offsite obeyed, bytes intact."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import pytest

from corpus.schema import RECORD_SCHEMA, make_record_id
from corpus.store import DataRoot
from crawlers.config import CrawlConfig
from crawlers.content import sniff_mime
from crawlers.page_context import parse_srcset
from crawlers.page_text import extract_text
from crawlers.run import CrawlError, crawl
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer

SHARD_ROWS = 20


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("site")
    truth = generate_site(out, seed=5, images_per_class=6)
    with SiteServer(out / "site") as server:
        yield out / "site", truth, server


@pytest.fixture(scope="module")
def crawled(site, tmp_path_factory: pytest.TempPathFactory):
    server = site[2]
    output = tmp_path_factory.mktemp("raw") / "run-1"
    config = CrawlConfig(
        start_url=server.url + "/index.html", source="sample-site", timeout_s=120, allowed_private_hosts=[server.url]
    )
    report = crawl(config, output, crawl_run="run-1", settings={"FLYWHEEL_SHARD_ROWS": str(SHARD_ROWS)})
    table = DataRoot(str(output)).read_table("")
    return report, table, output


def _paths(table, kind: str) -> list[str]:
    urls = [u for u, k in zip(table["url"].to_pylist(), table["kind"].to_pylist(), strict=True) if k == kind]
    return [urlparse(u).path for u in urls]


def test_every_allowed_page_and_image_once_and_nothing_else(site, crawled):
    _, truth, _ = site
    _, table, _ = crawled
    disallowed = set(truth["robots_disallowed"])
    pages = _paths(table, "text")
    images = _paths(table, "image")
    assert Counter(pages) == Counter(p for p in truth["pages"] if p not in disallowed)
    assert Counter(images) == Counter(p for p in truth["images"] if p not in disallowed)
    urls = table["url"].to_pylist() + table["page_url"].to_pylist()
    assert not any("/private/" in u for u in urls)
    assert not any("example.com" in u for u in urls)


def test_records_match_served_bytes_and_schema(site, crawled):
    site_dir, _, server = site
    _, table, _ = crawled
    assert table.schema.equals(RECORD_SCHEMA)
    for row in table.to_pylist():
        assert row["crawl_run"] == "run-1" and row["source"] == "sample-site"
        assert row["fetched_at"] is not None
        assert row["width"] is None and row["height"] is None and row["content_hash"] is None
        assert row["url"].startswith(server.url)
        served = (site_dir / urlparse(row["url"]).path.lstrip("/")).read_bytes()
        if row["kind"] == "image":
            assert row["image"] == served
            assert row["record_id"] == make_record_id(served)
            expected = {".jpg": "image/jpeg", ".png": "image/png"}[Path(row["url"]).suffix]
            assert row["mime"] == expected
            assert row["page_url"].startswith(server.url + "/gallery/")
        else:
            assert row["record_id"] == make_record_id(served)
            assert row["page_url"] == row["url"] and row["image"] is None
            assert row["title"] and row["text"]


def test_raw_crawl_keeps_pii_and_captions(site, crawled):
    _, truth, _ = site
    _, table, _ = crawled
    rows = table.to_pylist()
    text = "\n".join(r["text"] for r in rows if r["kind"] == "text")
    for value in truth["pii"]["email"] + truth["pii"]["phone"] + truth["pii"]["credit_card"]:
        assert value in text, value
    captions = {urlparse(r["url"]).path: (r["alt_text"], r["caption"]) for r in rows if r["kind"] == "image"}
    assert any(truth["pii"]["email"][0] in (c or "") for _, c in captions.values())
    assert any(truth["pii"]["email"][2] in (a or "") for a, _ in captions.values())
    # images reachable only through srcset / <picture><source> come with their figure's alt and caption
    near = [p for p, i in truth["images"].items() if "near_duplicate" in i["defects"]]
    assert all(captions[p][0] and captions[p][1] for p in near)


def test_images_carry_the_text_around_them(crawled):
    _, table, _ = crawled
    rows = table.to_pylist()
    page_text = {r["url"]: r["text"] for r in rows if r["kind"] == "text"}
    images = [r for r in rows if r["kind"] == "image" and r["page_url"] in page_text]
    with_context = [r for r in images if r["context_text"]]
    assert len(with_context) >= 0.9 * len(images)
    for row in with_context:
        # the words come from the page the image was found on, bounded in length
        assert row["context_text"].split()[0] in page_text[row["page_url"]]
        assert len(row["context_text"]) <= 400


def test_text_extracted_in_the_workers_is_what_the_crawl_process_would_extract(site, crawled, tmp_path):
    """The extraction stage's worker (the default) and extraction in the crawl process give the same rows."""
    site_dir, _, server = site
    _, table, _ = crawled
    pages = [r for r in table.to_pylist() if r["kind"] == "text"]
    for row in pages:
        served = (site_dir / urlparse(row["url"]).path.lstrip("/")).read_bytes()
        assert row["text"] == extract_text(served.decode("utf-8"), row["url"])
    config = CrawlConfig(
        start_url=server.url + "/index.html", source="sample-site", timeout_s=120, allowed_private_hosts=[server.url]
    )
    crawl(config, tmp_path / "in-process", crawl_run="run-1", settings={"FLYWHEEL_EXTRACT_WORKERS": "0"})
    in_process = DataRoot(str(tmp_path / "in-process")).read_table("").drop_columns(["fetched_at"])
    by_url = {r["url"]: r for r in in_process.to_pylist()}
    assert len(by_url) == table.num_rows
    for row in table.drop_columns(["fetched_at"]).to_pylist():
        assert by_url[row["url"]] == row


def test_broken_images_are_kept_for_curation(site, crawled):
    site_dir, truth, _ = site
    _, table, _ = crawled
    by_path = {urlparse(r["url"]).path: r for r in table.to_pylist() if r["kind"] == "image"}
    for path, info in truth["images"].items():
        if "corrupt" in info["defects"] or "tiny" in info["defects"]:
            assert by_path[path]["image"] == (site_dir / path.lstrip("/")).read_bytes()


def test_report_counts_match(site, crawled):
    truth = site[1]
    report, table, output = crawled
    kinds = Counter(table["kind"].to_pylist())
    assert report["pages"] == kinds["text"] and report["images"] == kinds["image"]
    assert report["records"] == table.num_rows
    assert report["bytes"]["images"] == sum(len(b) for b in table["image"].to_pylist() if b is not None)
    assert report["robots_denied"] == report["robots_forbidden"] >= 1
    assert report["ssrf_refused"] == {} and report["elapsed_s"] > 0
    assert report["offsite_filtered"] == 1
    # the one dead link is counted, not stored
    assert report["errors"] == {"http/404": len(truth["broken_links"])}
    assert report["status_codes"] == {"200": table.num_rows + 1, "404": len(truth["broken_links"])}  # + robots.txt
    assert report["finish_reason"] == "finished"
    assert report["output"] == str(output)
    assert report["shards"] == math.ceil(table.num_rows / SHARD_ROWS)
    shards = sorted(output.glob("part-*.parquet"))
    assert [p.name for p in shards] == [f"part-{i:05d}.parquet" for i in range(report["shards"])]
    assert all(pq.read_metadata(p).num_rows <= SHARD_ROWS for p in shards)
    assert not list(output.glob(".tmp-*"))


def test_max_pages_and_jobdir_resume(site, tmp_path):
    _, _, server = site
    output = tmp_path / "small"
    jobdir = tmp_path / "job"
    config = CrawlConfig(
        start_url=server.url + "/index.html",
        source="s",
        allowed_domains=["127.0.0.1"],
        max_pages=3,
        timeout_s=120,
        allowed_private_hosts=["127.0.0.1"],  # a bare host: the start URL's scheme and port
    )
    report = crawl(config, output, crawl_run="small", jobdir=jobdir)
    assert report["pages"] == 3
    assert report["images"] > 0
    # the same JOBDIR remembers what was seen: a rerun fetches nothing again and keeps the first shards
    again = crawl(config, output, crawl_run="small", jobdir=jobdir)
    assert again["pages"] == 0 and again["images"] == 0
    assert again["shards"] == report["shards"]


def test_crawl_failures_raise_with_the_log(tmp_path):
    for bad in ("ftp://host/x", "http://", "/relative", "127.0.0.1:8765"):
        with pytest.raises(ValueError, match=r"start_url must be an http\(s\) URL"):
            CrawlConfig(start_url=bad)
    closed = CrawlConfig(start_url="http://127.0.0.1:9/", source="s")
    with pytest.raises(CrawlError, match=r"exited with [1-9][\s\S]*set FLYWHEEL_CRAWL_JOB"):
        crawl(closed, tmp_path / "no", crawl_run="r", settings={"FLYWHEEL_CRAWL_JOB": ""})
    with pytest.raises(CrawlError, match="timed out"):
        crawl(closed.model_copy(update={"timeout_s": 0.2}), tmp_path / "slow", crawl_run="r")
    with pytest.raises(ValueError, match="state_path"):
        crawl(closed.model_copy(update={"incremental": True}), tmp_path / "inc", crawl_run="r")
    with pytest.raises(ValueError, match="state_path"):
        crawl(closed, tmp_path / "inc", crawl_run="r", state_path=tmp_path / "s.sqlite")


def test_extract_text_falls_back_to_visible_text():
    html = "<html><head><style>p{}</style></head><body><div>Hi <b>there</b></div><script>x=1</script></body></html>"
    text = extract_text(html, "http://127.0.0.1/x.html")
    assert "Hi" in text and "there" in text
    assert "x=1" not in text and "p{}" not in text


def test_helpers():
    assert sniff_mime(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_mime(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert sniff_mime(b"GIF89a...") == "image/gif"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_mime(b"<html>") is None
    assert parse_srcset("/a.jpg 1x, /b.jpg 2x,/c.png 640w") == ["/a.jpg", "/b.jpg", "/c.png"]


def test_scope_patterns_and_byte_budget(site, tmp_path):
    _, truth, server = site
    start = server.url + "/index.html"
    base = CrawlConfig(start_url=start, source="s", allowed_private_hosts=[server.url], timeout_s=60)
    scoped_config = base.model_copy(update={"exclude": [r"/gallery/page-00[2-9]\.html$"]})
    scoped = crawl(scoped_config, tmp_path / "scoped", crawl_run="scoped")
    pages = _paths(DataRoot(str(tmp_path / "scoped")).read_table(""), "text")
    assert "/gallery/page-001.html" in pages
    assert not any(p.startswith("/gallery/page-00") and p != "/gallery/page-001.html" for p in pages)
    assert scoped["out_of_scope"]["excluded"] >= 1
    # a byte budget smaller than one page: the crawl closes itself, cleanly, with what it wrote so far
    budget = crawl(base.model_copy(update={"max_bytes": 100}), tmp_path / "budget", crawl_run="scoped")
    assert budget["finish_reason"] == "byte_budget"
    assert budget["pages"] <= 1 and budget["records"] < len(truth["images"])
