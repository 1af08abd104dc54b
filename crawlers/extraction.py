"""Text extraction beside the crawl: page text (crawlers.page_text) in worker processes fed over pipes by the reactor.

On loopback the crawl is CPU bound and the reactor's thread is its bottleneck (bench/CRAWL.md). Extraction in
workers takes trafilatura off it. The workers are plain child processes that read batches of pages from a pipe
and write their texts back; the reactor writes and reads those pipes itself (non-blocking, from its event loop),
so the crawl process runs no helper thread. A ProcessPoolExecutor runs two (its manager and its queue feeder):
while one of them held the GIL the reactor's next system call waited for it (cProfile of the crawl child on a busy
host: 3 ms per pipe write, 575 of them for 1,000 pages; bench/CRAWL.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler

from crawlers.extraction_worker import FRAME_HEADER
from crawlers.items import PageItem

logger = logging.getLogger(__name__)

# HTML characters a batch may hold before it goes: well under SCRAPER_SLOT_MAX_ACTIVE_SIZE (Scrapy's default
# 5,000,000 bytes), past which Scrapy stops downloading until the responses in process are done.
BATCH_CHARS = 1024 * 1024
_READ_CHUNK = 1 << 20
# How long close() waits for a worker to see the end of its input: it finishes the batch in hand first.
REAP_WAIT_S = 2.0
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
_Batch = list[tuple[str, str, "asyncio.Future[str | None]"]]


def extract_here(html: str, url: str) -> str | None:
    """crawlers.page_text.extract_text in the crawl process: no workers, or a worker died.

    Imported on first use: with workers (the default) the crawl process never loads trafilatura (~0.2 s of CPU).
    """
    from crawlers.page_text import extract_text

    return extract_text(html, url)


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data


class _Worker:
    """One worker process and the reactor's ends of its two pipes; batches come back in the order they went."""

    def __init__(self, on_texts: Any, on_failure: Any) -> None:
        to_worker_r, self.to_fd = os.pipe()
        self.from_fd, from_worker_w = os.pipe()
        # print() goes to stderr (the crawl log, inherited): only the pipes carry frames
        code = f"import sys; sys.stdout = sys.stderr; from crawlers.extraction_worker import main; main({os.getpid()})"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(to_worker_r), str(from_worker_w)],
                pass_fds=(to_worker_r, from_worker_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [_PROJECT_ROOT, os.environ.get("PYTHONPATH")])),
                },
            )
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        os.set_blocking(self.to_fd, False)
        os.set_blocking(self.from_fd, False)
        self.on_texts, self.on_failure = on_texts, on_failure
        self.pending: deque[_Batch] = deque()
        self.outgoing = bytearray()
        self.incoming = bytearray()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def send(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        if self.loop is None:
            self.loop = loop
            loop.add_reader(self.from_fd, self._read)
        self.pending.append(batch)
        was_waiting = bool(self.outgoing)
        self.outgoing += _frame([(html, url) for html, url, _ in batch])
        if not was_waiting:
            self._write()

    def _write(self) -> None:
        try:
            written = os.write(self.to_fd, self.outgoing)
        except BlockingIOError:
            written = 0
        except OSError:  # the worker is gone: its read end closed
            self.on_failure(self)
            return
        del self.outgoing[:written]
        assert self.loop is not None
        if self.outgoing:
            self.loop.add_writer(self.to_fd, self._write)
        else:
            self.loop.remove_writer(self.to_fd)

    def _read(self) -> None:
        try:
            chunk = os.read(self.from_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # the worker ended: whatever it still had is extracted by the crawl process
            self.on_failure(self)
            return
        self.incoming += chunk
        while len(self.incoming) >= FRAME_HEADER.size:
            (size,) = FRAME_HEADER.unpack_from(self.incoming)
            if len(self.incoming) < FRAME_HEADER.size + size:
                break
            texts = pickle.loads(self.incoming[FRAME_HEADER.size : FRAME_HEADER.size + size])
            del self.incoming[: FRAME_HEADER.size + size]
            self.on_texts(self.pending.popleft(), texts)

    def close(self) -> list[_Batch]:
        """Close the pipes (the worker sees the end of its input and exits); return the batches not answered.

        The worker is waited for (it is idle by then: the crawl is over), so its CPU time counts in the crawl
        process's, and no zombie is left; one that does not end in REAP_WAIT_S is killed.
        """
        if self.closed:  # never twice: the numbers may belong to other files by now
            return []
        self.closed = True
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.from_fd)
            self.loop.remove_writer(self.to_fd)
        for fd in (self.to_fd, self.from_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        try:
            self.proc.wait(timeout=REAP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        unanswered, self.pending = list(self.pending), deque()
        return unanswered


class ExtractionPool:
    """`await pool.extract(html, url)`: in `workers` worker processes (0: in this process, at once).

    Pages wait until `batch_pages` (or BATCH_CHARS of HTML) are queued or `batch_wait_s` has passed since the
    first, then go as one batch to the worker with the fewest batches in hand. A worker that dies leaves its
    pages to this process, so every page gets its text.
    """

    def __init__(self, workers: int, batch_pages: int, batch_wait_s: float) -> None:
        self.workers = workers
        self.batch_pages = max(1, batch_pages)
        self.batch_wait_s = batch_wait_s
        self._workers: list[_Worker] = []
        self._batch: _Batch = []
        self._timer: asyncio.TimerHandle | None = None
        self._batch_chars = 0
        self._closed = False

    def start(self) -> None:
        """Start the workers, so they import trafilatura while robots.txt is fetched (at spider open).

        Measured: a cold worker needs ~0.2 s of CPU (it imports trafilatura and parsel) before its first page.
        """
        if self.workers and not self._workers and not self._closed:
            self._workers = [_Worker(self._deliver, self._worker_failed) for _ in range(self.workers)]

    async def extract(self, html: str, url: str) -> str | None:
        if not self.workers or self._closed:
            return extract_here(html, url)
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self._batch.append((html, url, future))
        self._batch_chars += len(html)
        if len(self._batch) >= self.batch_pages or self._batch_chars >= BATCH_CHARS:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(self.batch_wait_s, self._send)
        return await future

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch, self._batch_chars = self._batch, [], 0
        if not batch:
            return
        if not self._workers:  # closed meanwhile, or every worker died
            self._deliver(batch, None)
            return
        worker = min(self._workers, key=lambda w: len(w.pending))
        worker.send(asyncio.get_running_loop(), batch)

    @staticmethod
    def _deliver(batch: _Batch, texts: list[str | None] | None) -> None:
        if texts is None:
            texts = [extract_here(html, url) for html, url, _ in batch]
        for (_, _, future), text in zip(batch, texts, strict=True):
            if not future.done():
                future.set_result(text)

    def _worker_failed(self, worker: _Worker) -> None:
        logger.warning(
            "an extraction worker ended (exit %s); its pages are extracted in the crawl process", worker.proc.poll()
        )
        self._workers.remove(worker)
        if not self._workers:
            self.workers = 0
        for batch in worker.close():
            self._deliver(batch, None)

    def close(self) -> None:
        """Stop the workers; pages still queued or in a worker's hands, and pages from now on, are extracted here."""
        self._closed = True
        workers, self._workers = self._workers, []
        for worker in workers:
            for batch in worker.close():
                self._deliver(batch, None)
        if self._batch:
            self._send()


class TextExtractionPipeline:
    """The item pipeline stage before the shards: a PageItem's `markup` becomes its `text` (in the workers).

    The spider only fetches and follows links, so its callbacks never wait on extraction; a page's item waits
    here. FLYWHEEL_EXTRACT_WORKERS processes (0: in the crawl process), batches of FLYWHEEL_EXTRACT_BATCH_PAGES.
    """

    def __init__(self, pool: ExtractionPool) -> None:
        self.pool = pool

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TextExtractionPipeline:
        settings = crawler.settings
        pool = ExtractionPool(
            settings.getint("FLYWHEEL_EXTRACT_WORKERS"),
            settings.getint("FLYWHEEL_EXTRACT_BATCH_PAGES"),
            settings.getfloat("FLYWHEEL_EXTRACT_BATCH_WAIT_S"),
        )
        crawler.signals.connect(pool.start, signal=signals.spider_opened)
        crawler.signals.connect(pool.close, signal=signals.spider_closed)
        return cls(pool)

    async def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        if isinstance(item, PageItem) and item.markup is not None:
            item.text = await self.pool.extract(item.markup, item.url)
            item.markup = None  # the shard keeps the raw bytes; the decoded copy is not needed again
        return item
