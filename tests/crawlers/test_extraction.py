"""The extraction pool: pages go to worker processes in batches and every page gets its own text back, even when a
worker dies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from crawlers.extraction import ExtractionPool
from crawlers.page_text import extract_text

pytestmark = pytest.mark.timeout(60)


def _page(i: int) -> tuple[str, str]:
    words = " ".join(f"word{i}-{k}" for k in range(40))
    return f"<html><body><article><h1>Page {i}</h1><p>{words}.</p></article></body></html>", f"http://site.test/{i}"


async def _extract_all(pool: ExtractionPool, pages: list[tuple[str, str]]) -> list[str | None]:
    return await asyncio.gather(*(pool.extract(html, url) for html, url in pages))


def test_batches_in_workers_match_in_process_extraction() -> None:
    pages = [_page(i) for i in range(11)]
    pool = ExtractionPool(workers=1, batch_pages=4, batch_wait_s=0.01)  # two full batches, one sent by the timer
    try:
        texts = asyncio.run(_extract_all(pool, pages))
    finally:
        pool.close()
    assert texts == [extract_text(html, url) for html, url in pages]
    assert all(f"word{i}-39" in text for i, text in enumerate(texts))


def test_no_workers_and_a_closed_pool_extract_in_process() -> None:
    pages = [_page(i) for i in range(3)]
    expected = [extract_text(html, url) for html, url in pages]
    assert asyncio.run(_extract_all(ExtractionPool(0, 16, 0.02), pages)) == expected

    async def close_then_extract() -> list[str | None]:
        pool = ExtractionPool(workers=1, batch_pages=16, batch_wait_s=0.01)
        pool.start()
        pool.close()  # as at spider close: queued pages still get their text
        texts = await _extract_all(pool, pages)
        assert pool._workers == []  # not started again
        return texts

    assert asyncio.run(close_then_extract()) == expected


def test_a_worker_that_dies_leaves_its_pages_to_the_crawl_process() -> None:
    """A killed worker (the OOM killer, a crash in lxml): pages sent to it and pages after it still get their text."""
    pages = [_page(i) for i in range(9)]

    async def kill_then_extract() -> list[str | None]:
        pool = ExtractionPool(workers=1, batch_pages=3, batch_wait_s=0.01)
        pool.start()
        (worker,) = pool._workers
        worker.proc.kill()
        worker.proc.wait()
        try:
            return await _extract_all(pool, pages)
        finally:
            pool.close()
            assert pool.workers == 0 and pool._workers == []

    assert asyncio.run(kill_then_extract()) == [extract_text(html, url) for html, url in pages]


def test_a_worker_killed_with_batches_in_hand_loses_none_of_them() -> None:
    """Killed after its batches went down the pipe and before any answer came back: they are extracted here."""
    pages = [_page(i) for i in range(12)]

    async def kill_mid_batch() -> tuple[list[str | None], int]:
        pool = ExtractionPool(workers=1, batch_pages=4, batch_wait_s=0.01)
        pool.start()
        (worker,) = pool._workers
        work = [asyncio.ensure_future(pool.extract(html, url)) for html, url in pages]
        while len(worker.pending) < 3 or worker.outgoing:  # all three batches written to the worker's pipe
            await asyncio.sleep(0.001)
        in_hand = len(worker.pending)
        worker.proc.kill()
        try:
            return list(await asyncio.gather(*work)), in_hand
        finally:
            pool.close()

    texts, in_hand = asyncio.run(kill_mid_batch())
    assert in_hand == 3
    assert texts == [extract_text(html, url) for html, url in pages]


def test_two_workers_share_the_batches_and_end_with_the_pool() -> None:
    pages = [_page(i) for i in range(20)]

    async def extract_with_two() -> tuple[list[str | None], list[int]]:
        pool = ExtractionPool(workers=2, batch_pages=2, batch_wait_s=0.01)
        pool.start()
        procs = [w.proc for w in pool._workers]
        texts = await _extract_all(pool, pages)
        pool.close()
        # a worker reads the end of its input and exits: no process outlives the crawl
        return texts, [proc.wait(timeout=20) for proc in procs]

    texts, exits = asyncio.run(extract_with_two())
    assert texts == [extract_text(html, url) for html, url in pages]
    assert exits == [0, 0]


def test_the_crawl_process_loads_no_trafilatura_and_a_worker_no_scrapy() -> None:
    """Each process pays only its own imports at start (bench/CRAWL.md): ~0.2 s of CPU each saved."""
    root = str(Path(__file__).resolve().parents[2])
    checks = {
        "import crawlers.spiders.site, crawlers.pipelines, crawlers.extraction": "trafilatura",
        "import crawlers.extraction_worker, crawlers.page_text": "scrapy",
    }
    for code, absent in checks.items():
        probe = f"import sys; {code}; print({absent!r} in sys.modules)"
        out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False", (code, absent, out.stderr)
