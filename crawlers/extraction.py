"""The extraction pool: page text (crawlers.page_text.extract_text) in worker processes, sent in batches.

On loopback the crawl is CPU bound (bench/CRAWL.md) and the reactor's thread is its bottleneck. Extraction in
workers takes trafilatura off it, but one `ProcessPoolExecutor.submit` per page cost the reactor ~1 ms a page
(cProfile of the crawl child: the pool's wake-up pipe write waiting for the GIL held by the pool's own feeder
and manager threads, then a thread-safe callback back into the loop). A batch of pages is one submit, one
pickle, one wake-up and one callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from crawlers.child import die_with_parent
from crawlers.page_text import extract_text, extract_texts

logger = logging.getLogger(__name__)

# HTML characters a batch may hold before it goes: well under SCRAPER_SLOT_MAX_ACTIVE_SIZE (Scrapy's default
# 5,000,000 bytes), past which Scrapy stops downloading until the responses in process are done.
BATCH_CHARS = 1024 * 1024
_WARM_UP = [("<html><body><p>warm-up</p></body></html>", "http://warm.up/")]


def _call_in(loop: asyncio.AbstractEventLoop, callback: object, *args: object) -> None:
    """`callback(*args)` in `loop`'s thread (from the pool's manager thread); nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


class ExtractionPool:
    """`await pool.extract(html, url)`: in `workers` spawned processes (0: in this process, at once).

    Pages wait until `batch_pages` (or BATCH_CHARS of HTML) are queued or `batch_wait_s` has passed since the
    first, then go as one task.
    The crawl does not wait for them: the spider yields a page's requests before awaiting its text.
    """

    def __init__(self, workers: int, batch_pages: int, batch_wait_s: float) -> None:
        self.workers = workers
        self.batch_pages = max(1, batch_pages)
        self.batch_wait_s = batch_wait_s
        self._pool: ProcessPoolExecutor | None = None
        self._batch: list[tuple[str, str, asyncio.Future[str | None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._batch_chars = 0
        self._closed = False

    def start(self) -> None:
        """Start the workers and have them import trafilatura (while robots.txt is fetched, at spider open).

        Measured: a cold spawned worker needs ~1.5-2 s (it re-imports Scrapy and trafilatura) before its first page.
        """
        if self.workers and self._pool is None and not self._closed:
            # spawn, not fork: forking a process that runs a reactor and threads copies their locks mid-use
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
            )
            for _ in range(self.workers):
                self._pool.submit(extract_texts, _WARM_UP)

    async def extract(self, html: str, url: str) -> str | None:
        if not self.workers:
            return extract_text(html, url)
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
        loop = asyncio.get_running_loop()
        if self._pool is None:  # closed meanwhile, or the workers died
            self._deliver(batch, None)
            return
        try:
            task = self._pool.submit(extract_texts, [(html, url) for html, url, _ in batch])
        except (BrokenProcessPool, RuntimeError):  # broken, or shut down by close()
            self._deliver(batch, None)
            return
        task.add_done_callback(lambda done: _call_in(loop, self._deliver, batch, done))

    def _deliver(self, batch: list[tuple[str, str, asyncio.Future[str | None]]], done: Future | None) -> None:
        try:
            texts = done.result() if done is not None else None
        except BrokenProcessPool:
            logger.warning("extraction workers died; extracting in the crawl process from now on")
            self.close()
            self.workers = 0
            texts = None
        except (
            Exception,
            CancelledError,
        ) as exc:  # cancelled by close(), or a worker's own failure: the page still gets text
            logger.debug("extraction batch failed (%s: %s); extracting in the crawl process", type(exc).__name__, exc)
            texts = None
        if texts is None:
            texts = [extract_text(html, url) for html, url, _ in batch]
        for (_, _, future), text in zip(batch, texts, strict=True):
            if not future.done():
                future.set_result(text)

    def close(self) -> None:
        """Stop the workers; pages extracted from now on are extracted in this process."""
        self._closed = True
        if self._pool is not None:
            # no wait: the reactor stays free to finish closing; the interpreter joins the workers at exit
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
