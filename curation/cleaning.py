"""The curate stage: decode and size-check images, drop exact and near duplicates, drop empty and duplicate pages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import Stage, StageOutput, split_by_reason
from curation.dedup import find_near_duplicates, find_nearest, hash_bytes, hash_text
from curation.images import PILLOW_MAX_PIXELS, ImageDecodeError, compute_phash, decode_image, mime_of, orient

# Every reason this stage can give, in the order a row is checked.
DROP_REASONS = (
    "unknown_kind",
    "undecodable",
    "too_large",
    "too_small",
    "exact_duplicate",
    "near_duplicate",
    "empty_text",
    "duplicate_page",
)


class CurateConfig(BaseModel):
    """Thresholds of the curate stage."""

    min_side: int = Field(
        32,
        ge=1,
        description="Drop images whose shorter side is below this many pixels. 32 px is the side of CIFAR "
        "images, the smallest common training resolution; below it a web image is an icon, spacer or tracker.",
    )
    max_pixels: int = Field(
        PILLOW_MAX_PIXELS,
        ge=1,
        description="Decompression-bomb guard: images with more pixels are dropped as too_large before "
        "decoding. Default: Pillow's own Image.MAX_IMAGE_PIXELS (89,478,485).",
    )
    phash_max_distance: int = Field(
        10,
        ge=0,
        le=64,
        description="Images whose 64-bit pHashes differ in at most this many bits are near-duplicates. "
        "imagededup's PHash default max_distance_threshold is 10. Measured on 200 generated smooth random "
        "images and 150 resized + JPEG re-encoded copies: copies differ by 0-4 bits, distinct images by "
        ">= 14 (1st percentile 20, median 32).",
    )


def _stable_order(table: pa.Table) -> np.ndarray:
    """Row indices by fetched_at then url (nulls last), ties in input order: who counts as 'first'."""
    keys = [("fetched_at", "ascending", "at_end"), ("url", "ascending", "at_end")]
    return pc.sort_indices(table.select(["fetched_at", "url"]), sort_keys=keys).to_numpy()


def _pick_representative(
    members: Sequence[int], areas: Sequence[int], urls: Sequence[str | None], rank: np.ndarray
) -> int:
    """The member that stands for a cluster: the largest image, ties by url, then by stable order."""
    return min(members, key=lambda i: (-areas[i], urls[i] or "", rank[i]))


def _reference_images(reference: pa.Table | None) -> tuple[dict[str, str], np.ndarray, list[str]]:
    """From earlier kept images: content_hash -> cluster id, and the pHashes (M,) with their cluster ids."""
    if reference is None or reference.num_rows == 0:
        return {}, np.zeros(0, dtype=np.uint64), []
    missing = {"record_id", "content_hash", "phash"} - set(reference.column_names)
    if missing:
        raise ValueError(f"reference table lacks columns {sorted(missing)}")
    ids = reference.column("record_id").to_pylist()
    clusters = reference.column("near_dup_cluster").to_pylist() if "near_dup_cluster" in reference.column_names else ids
    clusters = [c or r for c, r in zip(clusters, ids, strict=True)]
    exact = {h: c for h, c in zip(reference.column("content_hash").to_pylist(), clusters, strict=True) if h}
    phashes = reference.column("phash").to_pylist()
    valid = [k for k, h in enumerate(phashes) if h is not None]
    return exact, np.array([phashes[k] for k in valid], dtype=np.uint64), [clusters[k] for k in valid]


def curate(table: pa.Table, cfg: CurateConfig | None = None, reference: pa.Table | None = None) -> StageOutput:
    """Decode, size-check and deduplicate a raw crawl table; every input row ends in kept or dropped.

    `reference` (optional) holds images kept by earlier runs (record_id, content_hash, phash, and
    near_dup_cluster if present): new images equal or near to one are dropped as exact_duplicate or
    near_duplicate with that earlier cluster's id, so a new crawl never re-adds what is already kept.

    Fills width, height, mime, content_hash and phash for decodable images (width/height after EXIF
    orientation), content_hash for pages, and near_dup_cluster (the representative's record_id) on every
    decodable image row; undecodable images keep a null cluster, too-small images are their own cluster.
    Raises ValueError if `table` has columns outside the record schema.
    """
    cfg = cfg or CurateConfig()
    table = conform(table, RECORD_SCHEMA)
    n = table.num_rows
    kinds = table.column("kind").to_pylist()
    record_ids = table.column("record_id").to_pylist()
    urls = table.column("url").to_pylist()
    images = table.column("image").to_pylist()
    texts = table.column("text").to_pylist()
    width = table.column("width").to_pylist()
    height = table.column("height").to_pylist()
    mime = table.column("mime").to_pylist()
    content_hash = table.column("content_hash").to_pylist()
    phash = table.column("phash").to_pylist()
    cluster: list[str | None] = table.column("near_dup_cluster").to_pylist()
    reasons: list[str | None] = [None] * n

    order = _stable_order(table)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    # Images: decode and measure.
    for i in range(n):
        if kinds[i] not in ("image", "text"):
            reasons[i] = "unknown_kind"
            continue
        if kinds[i] != "image":
            continue
        try:
            decoded = decode_image(images[i], cfg.max_pixels)
        except ImageDecodeError as exc:
            reasons[i] = exc.reason
            continue
        oriented = orient(decoded)
        width[i], height[i] = oriented.size
        mime[i] = mime_of(decoded)
        content_hash[i] = hash_bytes(images[i])
        phash[i] = int(compute_phash(oriented))
        cluster[i] = record_ids[i]
        if min(oriented.size) < cfg.min_side:
            reasons[i] = "too_small"

    # Duplicates of images kept by earlier runs.
    known_exact, known_phash, known_cluster = _reference_images(reference)
    known = 0
    for i in order:
        if kinds[i] == "image" and reasons[i] is None and content_hash[i] in known_exact:
            reasons[i], cluster[i] = "exact_duplicate", known_exact[content_hash[i]]
            known += 1
    fresh = [i for i in order if kinds[i] == "image" and reasons[i] is None]
    nearest, distance = find_nearest(np.array([phash[i] for i in fresh], dtype=np.uint64), known_phash)
    for k in np.flatnonzero(distance <= cfg.phash_max_distance):
        reasons[fresh[k]], cluster[fresh[k]] = "near_duplicate", known_cluster[nearest[k]]
        known += 1

    # Exact duplicates: the first copy in stable order is kept.
    first_copy: dict[str, int] = {}
    copy_of: dict[int, int] = {}
    for i in order:
        if kinds[i] == "image" and reasons[i] is None:
            original = first_copy.setdefault(content_hash[i], i)
            if original != i:
                reasons[i] = "exact_duplicate"
                copy_of[i] = original

    # Near duplicates among the remaining images: one representative per pHash cluster.
    candidates = [i for i in order if kinds[i] == "image" and reasons[i] is None]
    labels = find_near_duplicates(np.array([phash[i] for i in candidates], dtype=np.uint64), cfg.phash_max_distance)
    areas = [(width[i] or 0) * (height[i] or 0) for i in range(n)]
    groups: dict[int, list[int]] = {}
    for k, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(candidates[k])
    for members in groups.values():
        representative = _pick_representative(members, areas, urls, rank)
        for i in members:
            cluster[i] = record_ids[representative]
            if i != representative:
                reasons[i] = "near_duplicate"
    for duplicate, original in copy_of.items():
        cluster[duplicate] = cluster[original]

    # Pages: empty text, then exact duplicates of the normalised text.
    first_page: dict[str, int] = {}
    for i in order:
        if kinds[i] != "text":
            continue
        if texts[i] is None or not texts[i].strip():
            reasons[i] = "empty_text"
            continue
        content_hash[i] = hash_text(texts[i])
        if first_page.setdefault(content_hash[i], i) != i:
            reasons[i] = "duplicate_page"

    updated = table
    for name, values in (
        ("width", width),
        ("height", height),
        ("mime", mime),
        ("content_hash", content_hash),
        ("phash", phash),
        ("near_dup_cluster", cluster),
    ):
        field = RECORD_SCHEMA.field(name)
        updated = updated.set_column(updated.schema.get_field_index(name), field, pa.array(values, type=field.type))
    kept, dropped = split_by_reason(updated, reasons)

    kept_kinds = kept.column("kind").to_pylist()
    counters = {
        "exact_duplicates": reasons.count("exact_duplicate"),
        "near_duplicates": reasons.count("near_duplicate"),
        "duplicate_pages": reasons.count("duplicate_page"),
        "empty_text": reasons.count("empty_text"),
        "undecodable": reasons.count("undecodable"),
        "too_large": reasons.count("too_large"),
        "too_small": reasons.count("too_small"),
        "unknown_kind": reasons.count("unknown_kind"),
        "known_duplicates": known,
        "images_kept": kept_kinds.count("image"),
        "pages_kept": kept_kinds.count("text"),
    }
    return StageOutput(kept=kept, dropped=dropped, counters=counters)


CURATE = Stage(name="curate", version="1", apply=curate)
