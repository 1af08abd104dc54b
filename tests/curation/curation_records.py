"""Record and image builders shared by the curation tests."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from PIL import Image

from bench.planted import make_image
from corpus.schema import RECORD_SCHEMA, conform, make_record_id

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def smooth_image(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A distinct photo-like image: low-frequency random colour field plus mild noise."""
    return make_image(np.random.default_rng(seed), size)


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


def article(seed: int, words: int = 120) -> str:
    """A distinct page: random words from a 2,000-word vocabulary, in sentences."""
    rng = np.random.default_rng(seed)
    tokens = [f"w{int(k)}" for k in rng.integers(0, 2000, words)]
    return " ".join(" ".join(tokens[i : i + 12]).capitalize() + "." for i in range(0, words, 12))


def edit(text: str, seed: int, changes: int) -> str:
    """`text` with `changes` words replaced: each changes up to 5 of the 5-gram shingles."""
    rng = np.random.default_rng(seed)
    words = text.split()
    for k in rng.choice(len(words), changes, replace=False):
        words[k] = "edited"
    return " ".join(words)


def planted_pairs_table() -> tuple[list[str], list[int], list[int]]:
    """40 pages, 10 near copies (2-8 of 400 words edited: Jaccard 0.82-0.95) of pages 0-9 and 20 far copies
    (30 edits: Jaccard 0.47-0.53) of pages 20-39. Returns (texts, near copy positions, far copy positions)."""
    originals = [article(seed, 400) for seed in range(100, 140)]
    near = [edit(originals[k], 2000 + k, 2 + k % 7) for k in range(10)]
    far = [edit(originals[k], 3000 + k, 30) for k in range(20, 40)]
    return originals + near + far, list(range(40, 50)), list(range(50, 70))
