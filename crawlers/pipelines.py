"""The item pipeline: turns crawled items into record rows and writes them as raw Parquet shards plus `_report.json`."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from scrapy import Spider, signals
from scrapy.crawler import Crawler
from twisted.internet.task import LoopingCall

from corpus.schema import RECORD_SCHEMA, make_record_id
from corpus.store import DataRoot
from crawlers.config import CrawlJob
from crawlers.content import fingerprint, sniff_mime
from crawlers.items import ImageItem, PageItem
from crawlers.netguard import GuardedResolver
from crawlers.progress import PROGRESS_NAME, progress_counts, write_progress
from crawlers.report import build_report
from crawlers.state import CrawlState, UrlState

__all__ = ["ParquetShardPipeline", "item_to_record", "sniff_mime"]


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
            "context_text": item.context_text,
            **common,
        }
    raise TypeError(f"not a crawler item: {type(item).__name__}")


def _elapsed_s(start: datetime | None) -> float | None:
    """Seconds since Scrapy's `start_time` stat (the engine start), as its `elapsed_time_seconds` counts them."""
    return round((datetime.now(UTC) - start).total_seconds(), 3) if start else None


def item_state(item: PageItem | ImageItem) -> UrlState:
    """The incremental-crawl state a kept item leaves behind."""
    if isinstance(item, PageItem):
        return UrlState(
            item.url,
            "page",
            fingerprint(item.html),
            item.fetched_at.isoformat(),
            item.etag,
            item.last_modified,
            item.links,
            item.images,
        )
    fetched_at = item.fetched_at.isoformat()
    return UrlState(item.url, "image", fingerprint(item.body), fetched_at, item.etag, item.last_modified)


class ParquetShardPipeline:
    """Buffers records and writes `part-NNNNN.parquet` every FLYWHEEL_SHARD_ROWS rows and at close.

    Shard numbers continue after the shards already in the folder, so a resumed crawl (JOBDIR) adds
    to its earlier output instead of overwriting it. The incremental state (the spider's CrawlState)
    learns a URL only once its record is in a written shard.
    """

    def __init__(self, crawler: Crawler) -> None:
        # No job is an error, not NotConfigured: a crawl whose items go nowhere would lose everything it fetched.
        job = CrawlJob.from_crawler(crawler)
        self.crawler = crawler
        self.root = DataRoot(job.output_dir)
        self.source = job.config.source
        self.crawl_run = job.crawl_run
        self.shard_rows = crawler.settings.getint("FLYWHEEL_SHARD_ROWS", 500)
        self.buffer: list[dict[str, Any]] = []
        self.pending_state: list[UrlState] = []
        self.shards = len(self.root.list("", ".parquet"))
        self.shards_written: list[str] = []
        self.counts: Counter[str] = Counter()
        self.started_at = datetime.now(UTC)
        # Progress for the parent (crawlers.run): one small file rewritten on a timer, and only when a count
        # changed, never per page, so the reactor pays a few writes a minute however fast the crawl goes.
        self.progress_path = Path(job.output_dir) / PROGRESS_NAME
        self.progress_interval_s = crawler.settings.getfloat("FLYWHEEL_PROGRESS_INTERVAL_S", 2.0)
        self.progress_written: dict[str, int] | None = None
        self.progress_timer = LoopingCall(self.write_progress)
        # pyarrow's first Table.from_pylist pays one-time set-up (~0.2 s here): paid now, before the engine
        # starts, not in the reactor's thread at the first shard, which stalled every download meanwhile.
        pa.Table.from_pylist([], schema=RECORD_SCHEMA)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ParquetShardPipeline:
        pipeline = cls(crawler)
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    @property
    def crawl_state(self) -> CrawlState | None:
        return getattr(self.crawler.spider, "crawl_state", None)

    def process_item(self, item: PageItem | ImageItem, spider: Spider | None = None) -> PageItem | ImageItem:
        record = item_to_record(item, source=self.source, crawl_run=self.crawl_run)
        self.buffer.append(record)
        if self.crawl_state is not None and self.crawl_state.enabled:
            self.pending_state.append(item_state(item))
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
        if self.crawl_state is not None:
            self.crawl_state.put_many(self.pending_state)
        self.pending_state = []

    def open_spider(self, spider: Spider | None = None) -> None:
        if self.progress_interval_s > 0:
            self.progress_timer.start(self.progress_interval_s, now=False)

    def current_report(self) -> dict[str, Any]:
        """The report's figures so far; SSRF refusals include the resolver's, which the stats get only at the end."""
        report = build_report(self.crawler.stats.get_stats(), self.counts)
        for kind, count in GuardedResolver.refusals.items():
            report["ssrf_refused"][kind] = report["ssrf_refused"].get(kind, 0) + count
        return report

    def write_progress(self) -> None:
        counts = progress_counts(self.current_report())
        if counts != self.progress_written:
            write_progress(self.progress_path, counts)
            self.progress_written = counts

    def close_spider(self, spider: Spider | None = None) -> None:
        if self.progress_timer.running:
            self.progress_timer.stop()
        self._flush()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        self._flush()
        for kind, count in GuardedResolver.refusals.items():
            self.crawler.stats.inc_value(f"flywheel/ssrf_refused/{kind}", count)
        state = self.crawl_state
        report = build_report(
            self.crawler.stats.get_stats(),
            self.counts,
            crawl_run=self.crawl_run,
            source=self.source,
            finish_reason=reason,
            started_at=self.started_at.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            shards_written=self.shards_written,
            state_urls=state.count() if state is not None else 0,
            elapsed_s=_elapsed_s(self.crawler.stats.get_value("start_time")),
        )
        if state is not None:
            state.close()
        self.root.write_json("_report.json", report)
