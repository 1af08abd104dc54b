"""The item pipeline: turns crawled items into record rows and writes them as raw Parquet shards plus `_report.json`."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from scrapy import Spider, signals
from scrapy.crawler import Crawler

from corpus.schema import RECORD_SCHEMA, make_record_id
from corpus.store import DataRoot
from crawlers.items import ImageItem, PageItem

# Magic numbers of the image formats browsers show (WHATWG MIME sniffing, "image type pattern").
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type from the first bytes (JPEG, PNG, GIF, WebP); None when unknown."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def item_to_record(item: PageItem | ImageItem, *, source: str, crawl_run: str) -> dict[str, Any]:
    """One RECORD_SCHEMA row for a crawled item; raises TypeError for anything else."""
    common = {"url": item.url, "source": source, "crawl_run": crawl_run, "fetched_at": item.fetched_at}
    if isinstance(item, PageItem):
        return {
            "record_id": make_record_id(item.html),
            "kind": "text",
            "page_url": item.url,
            "title": item.title,
            "text": item.text,
            **common,
        }
    if isinstance(item, ImageItem):
        return {
            "record_id": make_record_id(item.body),
            "kind": "image",
            "page_url": item.page_url,
            "image": item.body,
            "mime": sniff_mime(item.body),
            "alt_text": item.alt_text,
            "caption": item.caption,
            **common,
        }
    raise TypeError(f"not a crawler item: {type(item).__name__}")


class ParquetShardPipeline:
    """Buffers records and writes `part-NNNNN.parquet` every FLYWHEEL_SHARD_ROWS rows and at close.

    Shard numbers continue after the shards already in the folder, so a resumed crawl (JOBDIR) adds
    to its earlier output instead of overwriting it.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        output = settings.get("FLYWHEEL_OUTPUT_DIR")
        if not output:
            # An error, not NotConfigured: a crawl whose items go nowhere would lose everything it fetched.
            raise ValueError("set FLYWHEEL_OUTPUT_DIR to the folder the raw shards go to")
        self.crawler = crawler
        self.root = DataRoot(str(output))
        self.source = settings.get("FLYWHEEL_SOURCE")
        self.crawl_run = settings.get("FLYWHEEL_CRAWL_RUN")
        self.shard_rows = settings.getint("FLYWHEEL_SHARD_ROWS", 500)
        self.buffer: list[dict[str, Any]] = []
        self.shards = len(self.root.list("", ".parquet"))
        self.shards_written: list[str] = []
        self.counts: Counter[str] = Counter()
        self.started_at = datetime.now(UTC)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ParquetShardPipeline:
        pipeline = cls(crawler)
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def process_item(self, item: PageItem | ImageItem, spider: Spider | None = None) -> PageItem | ImageItem:
        record = item_to_record(item, source=self.source, crawl_run=self.crawl_run)
        self.buffer.append(record)
        if record["kind"] == "text":
            self.counts["pages"] += 1
            self.counts["page_bytes"] += len(item.html)  # type: ignore[union-attr]
        else:
            self.counts["images"] += 1
            self.counts["image_bytes"] += len(record["image"])
            self.counts[f"mime/{record['mime'] or 'unknown'}"] += 1
        if len(self.buffer) >= self.shard_rows:
            self._flush()
        return item

    def _flush(self) -> None:
        if not self.buffer:
            return
        table = pa.Table.from_pylist(self.buffer, schema=RECORD_SCHEMA)
        name = f"part-{self.shards:05d}.parquet"
        self.root.write_table(name, table)
        self.shards += 1
        self.shards_written.append(name)
        self.buffer = []

    def close_spider(self, spider: Spider | None = None) -> None:
        self._flush()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        self._flush()
        self.root.write_json("_report.json", self._report(reason))

    def _report(self, reason: str) -> dict[str, Any]:
        stats = self.crawler.stats.get_stats()
        status_codes: dict[str, int] = {}
        errors: dict[str, int] = {}
        for key, value in stats.items():
            if key.startswith("downloader/response_status_count/"):
                status_codes[key.rsplit("/", 1)[1]] = value
            elif key.startswith("downloader/exception_type_count/") and not key.endswith(".IgnoreRequest"):
                # IgnoreRequest is how robots.txt denies a URL; it is counted as robots_forbidden.
                errors["download/" + key.rsplit("/", 1)[1].rsplit(".", 1)[-1]] = value
            elif key.startswith("spider_exceptions/"):
                errors["spider/" + key.split("/", 1)[1]] = value
            elif key.startswith("httperror/response_ignored_status_count/"):
                errors["http/" + key.rsplit("/", 1)[1]] = value
            elif key == "downloader/response_dropped" or key.startswith("log_count/ERROR"):
                errors[key] = value
        return {
            "crawl_run": self.crawl_run,
            "source": self.source,
            "finish_reason": reason,
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "pages": self.counts["pages"],
            "images": self.counts["images"],
            "records": self.counts["pages"] + self.counts["images"],
            "bytes": {
                "pages": self.counts["page_bytes"],
                "images": self.counts["image_bytes"],
                "downloaded": stats.get("downloader/response_bytes", 0),
            },
            "mime": {k.split("/", 1)[1]: v for k, v in sorted(self.counts.items()) if k.startswith("mime/")},
            "requests": stats.get("downloader/request_count", 0),
            "responses": stats.get("downloader/response_count", 0),
            "status_codes": dict(sorted(status_codes.items())),
            "robots_forbidden": stats.get("robotstxt/forbidden", 0),
            "offsite_filtered": stats.get("offsite/filtered", 0),
            "duplicates_filtered": stats.get("dupefilter/filtered", 0),
            "pages_over_budget": stats.get("flywheel/pages_over_budget", 0),
            "non_html_skipped": stats.get("flywheel/non_html_skipped", 0),
            "errors": dict(sorted(errors.items())),
            "shards_written": self.shards_written,
        }
