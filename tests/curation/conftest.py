"""Builders for small raw crawl tables with planted defects: generated images and text pages."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from corpus.schema import RECORD_SCHEMA, conform, make_record_id

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def smooth_image(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A distinct photo-like image: low-frequency random colour field plus mild noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    noisy = np.asarray(coarse).astype(np.int16) + rng.integers(-20, 20, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def image_row(data: bytes, url: str, minute: int, alt_text: str | None = None, caption: str | None = None) -> dict:
    return {
        "record_id": make_record_id(data),
        "kind": "image",
        "url": url,
        "page_url": "http://127.0.0.1/page",
        "fetched_at": T0 + timedelta(minutes=minute),
        "image": data,
        "alt_text": alt_text,
        "caption": caption,
    }


def text_row(text: str | None, url: str, minute: int, title: str | None = None) -> dict:
    return {
        "record_id": make_record_id((url + (text or "")).encode()),
        "kind": "text",
        "url": url,
        "fetched_at": T0 + timedelta(minutes=minute),
        "text": text,
        "title": title,
    }


def build_table(rows: list[dict]) -> pa.Table:
    columns = {name: [row.get(name) for row in rows] for name in {k for row in rows for k in row}}
    return conform(pa.table({k: pa.array(v, type=RECORD_SCHEMA.field(k).type) for k, v in columns.items()}))


def by_url(table: pa.Table, column: str) -> dict:
    return dict(zip(table.column("url").to_pylist(), table.column(column).to_pylist(), strict=True))


@pytest.fixture
def raw_images() -> dict[str, bytes]:
    """Planted images by name; `near_a` is a half-size JPEG re-encode of `a`, `b_copy` the same bytes as `b`."""
    a, b, c = smooth_image(1), smooth_image(2), smooth_image(3)
    truncated = encode(smooth_image(4), "JPEG", quality=90)
    return {
        "a": encode(a),
        "b": encode(b),
        "c": encode(c, "JPEG", quality=90),
        "near_a": encode(a.resize((128, 96)), "JPEG", quality=70),
        "b_copy": encode(b),
        "truncated": truncated[: len(truncated) // 2],
        "tiny": encode(smooth_image(5, (10, 10))),
        "junk": b"<html><body>not an image</body></html>",
    }


@pytest.fixture
def raw_table(raw_images: dict[str, bytes]) -> pa.Table:
    """Images and pages with planted defects; the near-duplicate is fetched before its larger original."""
    page = "Cats are great.\nThey   sleep a lot."
    rows = [
        image_row(raw_images["near_a"], "http://127.0.0.1/img/near_a.jpg", 0),
        image_row(raw_images["a"], "http://127.0.0.1/img/a.png", 1),
        image_row(raw_images["b"], "http://127.0.0.1/img/b.png", 2),
        image_row(raw_images["c"], "http://127.0.0.1/img/c.jpg", 3),
        image_row(raw_images["b_copy"], "http://127.0.0.1/img/b_copy.png", 4),
        image_row(raw_images["truncated"], "http://127.0.0.1/img/truncated.jpg", 5),
        image_row(raw_images["tiny"], "http://127.0.0.1/img/tiny.png", 6),
        image_row(raw_images["junk"], "http://127.0.0.1/img/junk.png", 7),
        text_row(page, "http://127.0.0.1/p1", 8, title="Cats"),
        text_row("  CATS are great. they sleep   a lot.  ", "http://127.0.0.1/p1-copy", 9, title="Cats"),
        text_row("Dogs bark.", "http://127.0.0.1/p2", 10, title="Dogs"),
        text_row("   \n ", "http://127.0.0.1/empty", 11),
        text_row(None, "http://127.0.0.1/null", 12),
    ]
    return build_table(rows)
