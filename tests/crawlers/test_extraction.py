"""The extraction pool: pages go to worker processes in batches and every page gets its own text back."""

from __future__ import annotations

import asyncio

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
        assert pool._pool is None  # not started again
        return texts

    assert asyncio.run(close_then_extract()) == expected
