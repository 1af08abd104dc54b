"""A crawl into an s3:// data root: staged under the work dir, uploaded with its report last, incremental
state carried through the bucket (a real moto server on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawlers.config import CrawlConfig
from crawlers.run import crawl_to_root
from pipelines.demo.sample_site import generate_site
from pipelines.demo.site_server import SiteServer

pytestmark = [pytest.mark.s3, pytest.mark.timeout(120)]


def _keys(moto_s3, bucket: str, prefix: str) -> list[str]:
    pages = moto_s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_crawl_to_an_s3_root_uploads_parts_then_report_and_carries_incremental_state(moto_s3, tmp_path: Path):
    generate_site(tmp_path / "gen", seed=3, images_per_class=4)
    root, bucket = moto_s3.open_root("crawl", "fw")
    work = tmp_path / "work"
    with SiteServer(tmp_path / "gen" / "site") as site:

        def run(crawl_run: str) -> dict:
            config = CrawlConfig(
                start_url=site.url + "/index.html",
                source="sample",
                incremental=True,
                allowed_private_hosts=[site.url],
                timeout_s=60,
            )
            return crawl_to_root(root, config, crawl_run=crawl_run, work_dir=work)

        first = run("crawl-1")
        assert first["pages"] > 5 and first["images"] > 10 and first["shards"] >= 1
        assert first["output"] == f"s3://{bucket}/fw/raw/crawl-1"
        keys = _keys(moto_s3, bucket, "fw/")
        raw = [k for k in keys if k.startswith("fw/raw/crawl-1/")]
        assert "fw/raw/crawl-1/_report.json" in raw and "fw/raw/crawl-1/_crawl.log" in raw
        assert len([k for k in raw if k.endswith(".parquet")]) == first["shards"]
        assert "fw/state/crawl/sample.sqlite" in keys  # the incremental state lives with the data
        assert not [k for k in keys if "/jobs/" in k or "/.tmp-" in k]  # the job folder stays local
        assert root.read_table("raw/crawl-1").num_rows == first["records"]
        assert not (work / "crawl" / "crawl-1").exists()  # staging removed once uploaded

        # A second crawl starts from the state in the bucket: everything answers 304, nothing is written.
        second = run("crawl-2")
        assert second["pages"] == 0 and second["images"] == 0 and second["shards"] == 0
        assert second["unchanged"]["page_304"] == first["pages"]
        assert _keys(moto_s3, bucket, "fw/raw/crawl-2/") == ["fw/raw/crawl-2/_crawl.log", "fw/raw/crawl-2/_report.json"]
