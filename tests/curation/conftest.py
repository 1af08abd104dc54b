"""Builders for small raw crawl tables with planted defects: generated images and text pages."""

from __future__ import annotations

import pyarrow as pa
import pytest
from curation_records import build_table, encode, image_row, smooth_image, text_row


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
