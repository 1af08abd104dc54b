"""Measuring for the curate stage: each row's size, hashes, language and checks, which need no other row of the run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from PIL import Image

from corpus.schema import RECORD_SCHEMA, conform
from curation.copies import COLOUR_DIM, compute_colour, compute_copy_features, decode_for_copies
from curation.curate_config import CurateConfig
from curation.dedup import hash_bytes, hash_text
from curation.images import (
    SIGNATURE_SIZE,
    ImageDecodeError,
    compute_phash,
    compute_signature,
    decode_for_checks,
    get_information_score,
    mime_of,
)
from curation.index import compute_fetch_keys
from curation.minhash import SKETCH_WIDTH, compute_page_keys, compute_text_bands
from curation.quality import find_text_issues


def check_image(image: Image.Image, cfg: CurateConfig, size: tuple[int, int] | None = None) -> str | None:
    """The drop reason of a decoded, oriented image (size, shape, information), or None if it is usable.

    `size` is the full image's size when `image` is a reduced working copy of it (default: `image.size`).
    """
    size = size or image.size
    if min(size) < cfg.min_side:
        return "too_small"
    if max(size) > cfg.max_aspect_ratio * min(size):
        return "extreme_aspect_ratio"
    if get_information_score(image) < cfg.min_information:
        return "low_information"
    return None


# The per-row result of measuring: all the duplicate search needs, and the columns curate fills in.
FEATURE_SCHEMA = pa.schema(
    [
        pa.field("g", pa.int64(), nullable=False),  # the row's position in the whole run's input
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        RECORD_SCHEMA.field("url"),
        RECORD_SCHEMA.field("fetched_at"),
        pa.field("reason", pa.string()),
        pa.field("cluster", pa.string()),
        RECORD_SCHEMA.field("width"),
        RECORD_SCHEMA.field("height"),
        RECORD_SCHEMA.field("mime"),
        RECORD_SCHEMA.field("lang"),
        RECORD_SCHEMA.field("content_hash"),
        RECORD_SCHEMA.field("phash"),
        pa.field("area", pa.int64()),
        pa.field("fetch_key", pa.string(), nullable=False),  # curation.index.compute_fetch_keys
        # Filled in from the dedup index by the run (curation.known), false / null as measured here:
        pa.field("in_index", pa.bool_()),
        pa.field("earlier", pa.string()),  # pages: the cluster kept by an earlier run that this page matches
        # Pages: the LSH keys the run searches with (BANDS, or RECALL_BANDS with cfg.text_near_dup_verify) and,
        # with that setting, the SKETCH_WIDTH 16-bit MinHash values that confirm a candidate pair.
        pa.field("bands", pa.list_(pa.uint64())),
        # Pages, with cfg.text_near_dup_verify only: the 14 x 8 keys the dedup index is matched on (else `bands`).
        pa.field("index_bands", pa.list_(pa.uint64())),
        pa.field("sketch", pa.large_list(pa.uint16())),
        pa.field("signature", pa.large_list(pa.float32())),  # SIGNATURE_DIM values, for images still kept
        # With cfg.semantic_near_duplicates, for images still kept: COLOUR_DIM values (copies.compute_colour) and
        # copies.CopyFeatures.to_bytes (keypoints and a thumbnail, ~36 KB), what the copy search compares.
        pa.field("colour", pa.large_list(pa.float32())),
        pa.field("copy", pa.large_binary()),
    ]
)
SIGNATURE_DIM = 3 * SIGNATURE_SIZE * SIGNATURE_SIZE
# The FEATURE_SCHEMA columns measuring fills per row, held as Python lists while it works.
_FILLED = ("reason", "cluster", "width", "height", "mime", "lang", "content_hash", "phash", "in_index", "earlier")


@dataclass
class Measuring:
    """The columns of one table being measured, as lists (rows are visited one by one)."""

    table: pa.Table
    fetch_keys: list[str]
    values: dict[str, list]
    signatures: dict[int, np.ndarray] = field(default_factory=dict)
    colours: dict[int, np.ndarray] = field(default_factory=dict)
    copies: dict[int, bytes] = field(default_factory=dict)
    bands: dict[int, list[int]] = field(default_factory=dict)
    index_bands: dict[int, list[int]] = field(default_factory=dict)
    sketches: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def start(cls, table: pa.Table) -> Measuring:
        """Lists of the record columns measuring fills, seeded from `table` (a conformed record table)."""
        n = table.num_rows
        seeded = {name: table.column(name).to_pylist() for name in ("width", "height", "mime", "lang", "phash")}
        values = {
            **seeded,
            "content_hash": table.column("content_hash").to_pylist(),
            "cluster": table.column("near_dup_cluster").to_pylist(),
            "reason": [None] * n,
            "in_index": [False] * n,
            "earlier": [None] * n,
        }
        return cls(table, compute_fetch_keys(table), values)

    def rows_of(self, kind: str) -> list[int]:
        """Positions of the rows of `kind` that no check has dropped yet."""
        kinds, reasons = self.table.column("kind").to_pylist(), self.values["reason"]
        return [i for i, k in enumerate(kinds) if k == kind and reasons[i] is None]


def measure_images(m: Measuring, cfg: CurateConfig) -> None:
    """Decode, orient, measure, hash and check each image row; a layout signature for those still kept.

    One image at a time, and each only as large as its checks need (images.decode_for_checks): at most
    `cfg.max_decode_bytes` of decoded pixels plus a working copy of <= 511 px on its shorter side.
    """
    v, record_ids = m.values, m.table.column("record_id").to_pylist()
    images = m.table.column("image")
    for i in m.rows_of("image"):
        data = images[i].as_py()
        try:
            decoded = decode_for_checks(data, cfg.max_pixels, cfg.max_decode_bytes)
        except ImageDecodeError as exc:
            v["reason"][i] = exc.reason
            continue
        v["width"][i], v["height"][i] = decoded.size
        v["mime"][i] = mime_of(decoded.format)
        v["content_hash"][i] = hash_bytes(data)
        v["phash"][i] = int(compute_phash(decoded.image))
        v["cluster"][i] = record_ids[i]
        v["reason"][i] = check_image(decoded.image, cfg, decoded.size)
        if v["reason"][i] is None:
            m.signatures[i] = compute_signature(decoded.image)
            if cfg.semantic_near_duplicates:  # decoded again: the working copy is too small for keypoints
                rgb = decode_for_copies(data)
                m.colours[i], m.copies[i] = compute_colour(rgb), compute_copy_features(rgb).to_bytes()


def measure_pages(m: Measuring, cfg: CurateConfig) -> None:
    """Pages: empty text, language and quality, then what the LSH search needs."""
    v, texts = m.values, m.table.column("text").to_pylist()
    for i in m.rows_of("text"):
        if texts[i] is None or not texts[i].strip():
            v["reason"][i] = "empty_text"
    readable = m.rows_of("text")
    quality_reasons, languages = find_text_issues([texts[i] for i in readable], cfg.quality)
    for i, reason, code in zip(readable, quality_reasons, languages, strict=True):
        v["reason"][i] = reason
        v["lang"][i] = v["lang"][i] or code
        v["content_hash"][i] = hash_text(texts[i])
    unique = m.rows_of("text")
    if not (cfg.text_near_duplicates and unique):
        return
    if cfg.text_near_dup_verify:
        keys, search_keys, sketches = compute_page_keys([texts[i] for i in unique])
        m.sketches.update(zip(unique, sketches, strict=True))
        # Earlier runs are matched on the dedup index's 14 x 8 keys, unchecked: the index holds no sketches.
        m.index_bands.update((i, keys[k].tolist()) for k, i in enumerate(unique))
    else:
        search_keys = compute_text_bands([texts[i] for i in unique])
    record_ids = m.table.column("record_id").to_pylist()
    for k, i in enumerate(unique):
        m.bands[i] = search_keys[k].tolist()
        v["cluster"][i] = record_ids[i]


def _vector_column(vectors: dict[int, np.ndarray], n: int, width: int, value_type: pa.DataType) -> pa.Array:
    """A large_list column of `n` rows from numpy vectors of `width` values (rows absent from `vectors` are
    null), built directly: a Python list per row costs ~0.5 ms for an image signature."""
    rows = sorted(vectors)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = width
    dtype = value_type.to_pandas_dtype()
    values = np.concatenate([vectors[i] for i in rows]) if rows else np.zeros(0, dtype=dtype)
    missing = np.ones(n, dtype=bool)
    missing[rows] = False
    return pa.LargeListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(lengths)]), pa.array(values, value_type), mask=pa.array(missing)
    )


def features_table(m: Measuring, first_row: int) -> pa.Table:
    """The FEATURE_SCHEMA table of what `m` measured; rows numbered from `first_row`."""
    n, v = m.table.num_rows, m.values
    columns = {name: pa.array(v[name], FEATURE_SCHEMA.field(name).type) for name in _FILLED}
    area = [(w or 0) * (h or 0) for w, h in zip(v["width"], v["height"], strict=True)]
    bands = [m.bands.get(i) for i in range(n)]
    index_bands = [m.index_bands.get(i) for i in range(n)]
    return pa.table(
        {
            "g": pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
            **{name: m.table.column(name) for name in ("record_id", "kind", "url", "fetched_at")},
            **columns,
            "fetch_key": pa.array(m.fetch_keys, pa.string()),
            "area": pa.array(area, pa.int64()),
            "bands": pa.array(bands, FEATURE_SCHEMA.field("bands").type),
            "index_bands": pa.array(index_bands, FEATURE_SCHEMA.field("index_bands").type),
            "sketch": _vector_column(m.sketches, n, SKETCH_WIDTH, pa.uint16()),
            "signature": _vector_column(m.signatures, n, SIGNATURE_DIM, pa.float32()),
            "colour": _vector_column(m.colours, n, COLOUR_DIM, pa.float32()),
            "copy": pa.array([m.copies.get(i) for i in range(n)], pa.large_binary()),
        },
        schema=FEATURE_SCHEMA,
    )


def measure_records(table: pa.Table, cfg: CurateConfig, first_row: int = 0) -> pa.Table:
    """Everything about each row that needs no other row of the run or earlier runs: a FEATURE_SCHEMA table.

    Decodes, measures and checks images; identifies language and checks pages; hashes both; computes the
    LSH bands and layout signatures the run-wide duplicate search (and the match with earlier runs,
    curation.known) compares. `first_row` is the position of this table's first row in the
    run's input, so shards measured apart still number their rows as one table would.
    """
    m = Measuring.start(conform(table, RECORD_SCHEMA))
    kinds = m.table.column("kind").to_pylist()
    for i, kind in enumerate(kinds):
        if kind not in ("image", "text"):
            m.values["reason"][i] = "unknown_kind"
    measure_images(m, cfg)
    measure_pages(m, cfg)
    return features_table(m, first_row)
