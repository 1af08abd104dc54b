"""Synthetic raw crawl tables of any size with planted duplicates and defects, and the truth about them.

For benchmarks and tests of curation at scale (nothing is downloaded): photo-like images with exact
copies, resized and re-encoded near copies, cut-off (undecodable) files and icons; pages of generated prose with
exact copies (other spacing and case), lightly edited near copies and empty pages. Copies are fetched
later than their originals, so the curate stage keeps the originals.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from PIL import Image

from corpus.schema import RECORD_SCHEMA, conform, make_record_id

T0 = datetime(2026, 11, 1, tzinfo=UTC)
# A vocabulary of made-up words: generated pages share no long n-grams unless copied.
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "so", "pe", "du", "ra", "ki", "mo", "la", "fe", "zu"]


@dataclass
class PlantedCorpus:
    """A raw table and, by url, what was planted: url -> (defect, url of the original or None)."""

    table: pa.Table
    planted: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def make_image(rng: np.random.Generator, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A distinct photo-like image: a low-frequency random colour field with mild noise."""
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    noisy = np.asarray(coarse).astype(np.int16) + rng.integers(-20, 20, (size[1], size[0], 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def make_vocabulary(rng: np.random.Generator, size: int = 400) -> list[str]:
    return ["".join(rng.choice(_SYLLABLES, size=3)) for _ in range(size)]


def make_page(rng: np.random.Generator, vocabulary: list[str], words: int = 220) -> str:
    sentences, count = [], 0
    while count < words:
        length = int(rng.integers(8, 16))
        sentence = " ".join(rng.choice(vocabulary, size=length))
        sentences.append(sentence.capitalize() + ".")
        count += length
    return " ".join(sentences)


def _edit(rng: np.random.Generator, text: str, fraction: float = 0.01) -> str:
    words = text.split(" ")
    for k in rng.choice(len(words), size=max(1, int(len(words) * fraction)), replace=False):
        words[k] = words[k][::-1]
    return " ".join(words)


def generate_corpus(images: int = 200, pages: int = 200, seed: int = 0, duplicate_rate: float = 0.1) -> PlantedCorpus:
    """`images` image rows and `pages` page rows; about `duplicate_rate` of each are planted copies.

    Images: of every 10, about 10 x duplicate_rate are copies (half exact, half resized JPEG), and 1 in
    50 is cut off (undecodable) or an icon. Pages: copies half exact (spacing and case changed), half 1% of words
    edited, and 1 in 50 empty. Originals are fetched first; copies point at them in `planted`.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    planted: dict[str, tuple[str, str | None]] = {}
    originals: list[tuple[str, Image.Image, bytes]] = []
    near_copies: dict[str, str] = {}
    for k in range(images):
        url = f"http://127.0.0.1/img/{k:06d}.png"
        draw = rng.random()
        if originals and draw < duplicate_rate:
            source_url, source, data = originals[int(rng.integers(len(originals)))]
            if draw < duplicate_rate / 2:
                planted[url] = ("exact_duplicate", source_url)
            elif source_url in near_copies:  # the same resize of the same image: the very same bytes again
                data = _encode(source.resize((source.width * 3 // 4, source.height * 3 // 4)), "JPEG", quality=80)
                planted[url] = ("exact_duplicate", near_copies[source_url])
            else:
                data = _encode(source.resize((source.width * 3 // 4, source.height * 3 // 4)), "JPEG", quality=80)
                planted[url] = ("near_duplicate", source_url)
                near_copies[source_url] = url
        elif draw > 0.99:
            data = _encode(make_image(rng))[:300]
            planted[url] = ("undecodable", None)
        elif draw > 0.98:
            data = _encode(make_image(rng, (12, 12)))
            planted[url] = ("too_small", None)
        else:
            image = make_image(rng)
            data = _encode(image)
            originals.append((url, image, data))
        rows.append({"record_id": make_record_id(data), "kind": "image", "url": url, "image": data, "minute": k})
    texts: list[tuple[str, str]] = []
    vocabulary = make_vocabulary(rng)
    for k in range(pages):
        url = f"http://127.0.0.1/page/{k:06d}"
        draw = rng.random()
        if texts and draw < duplicate_rate:
            source_url, source = texts[int(rng.integers(len(texts)))]
            if draw < duplicate_rate / 2:
                text = "  " + source.upper().replace(" ", "   ") + "\n"
                planted[url] = ("duplicate_page", source_url)
            else:
                text = _edit(rng, source)
                planted[url] = ("near_duplicate_page", source_url)
        elif draw > 0.98:
            text = "   "
            planted[url] = ("empty_text", None)
        else:
            text = make_page(rng, vocabulary)
            texts.append((url, text))
        rows.append(
            {"record_id": make_record_id((url + text).encode()), "kind": "text", "url": url, "text": text, "minute": k}
        )
    for row in rows:
        row["fetched_at"] = T0 + timedelta(minutes=row.pop("minute"), seconds=0 if row["url"] not in planted else 30)
        row["page_url"] = "http://127.0.0.1/"
        row["source"] = "planted"
    columns = {name: [row.get(name) for row in rows] for name in ("record_id", "kind", "url", "page_url", "source")}
    columns |= {name: [row.get(name) for row in rows] for name in ("fetched_at", "image", "text")}
    table = pa.table({k: pa.array(v, type=RECORD_SCHEMA.field(k).type) for k, v in columns.items()})
    return PlantedCorpus(conform(table), planted)
