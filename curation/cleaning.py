"""The curate stage: check images and pages, drop exact and near duplicates, identify language, check quality."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from pydantic import BaseModel, Field

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import Stage, StageOutput, run_stage, split_by_reason
from corpus.store import DataRoot
from curation.dedup import find_nearest, hash_bytes, hash_text
from curation.images import (
    PILLOW_MAX_PIXELS,
    SIGNATURE_SIZE,
    ImageDecodeError,
    compute_phash,
    compute_signature,
    decode_image,
    get_information_score,
    mime_of,
    orient,
)
from curation.index import INDEX_PATH, DedupIndex, compute_fetch_keys, load_index, save_index, update_index
from curation.minhash import BANDS, compute_text_bands, match_bands
from curation.partitions import (
    Settlement,
    close_signatures,
    digest_of,
    find_band_links,
    find_exact_groups,
    find_image_links,
    image_buckets,
    partition_of_band,
    partition_of_bucket,
    partition_of_hash,
    settle_duplicates,
)
from curation.quality import QUALITY_REASONS, QualityConfig, find_text_issues

# Every reason this stage can give, in the order a row is checked.
DROP_REASONS = (
    "unknown_kind",
    "undecodable",
    "truncated",
    "too_large",
    "too_small",
    "extreme_aspect_ratio",
    "low_information",
    "exact_duplicate",
    "near_duplicate",
    "empty_text",
    *QUALITY_REASONS,
    "duplicate_page",
    "near_duplicate_page",
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
    near_dup_max_signature_distance: float = Field(
        0.06,
        ge=0,
        le=1,
        description="A pHash near-duplicate pair must also have 32x32 layout signatures (images.compute_signature) "
        "within this mean absolute difference. Measured on the sample site (seed 7): planted resized / re-encoded "
        "copies 0.000-0.037, distinct textures that pHash put within 10 bits 0.083 or more.",
    )
    max_aspect_ratio: float = Field(
        3.0,
        ge=1.0,
        description="Drop images whose longer side exceeds this multiple of the shorter (banners, spacers, "
        "strips). 3 is DataComp's basic-filtering bound (Gadre et al. 2023).",
    )
    min_information: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Drop near-uniform images: greyscale histogram entropy / 8 bits below this (0 = one flat "
        "colour, 0.125 = a clean two-tone image, photos 0.8-0.95; measured in tests/curation). Below 0.1 "
        "an image holds fewer than ~2 distinct grey levels' worth of information.",
    )
    text_near_duplicates: bool = Field(
        True,
        description="Drop pages that are MinHash near-duplicates (5-gram shingles, 14 bands x 8 rows: "
        "datatrove's FineWeb defaults; pairs above Jaccard ~0.75 are caught) as near_duplicate_page.",
    )
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Page language and quality rules.")


@dataclass(frozen=True)
class KnownRecords:
    """What earlier runs kept, in the form the curate stage compares against; built once, sent to every shard.

    Images: byte hash -> cluster, pHashes with their clusters, fetch keys. Pages: text hash -> cluster,
    fetch key -> cluster, LSH band keys (K, BANDS) with their clusters. A few dozen bytes per record.
    """

    image_exact: dict[str, str] = field(default_factory=dict)
    image_phash: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    image_cluster: list[str] = field(default_factory=list)
    image_fetches: frozenset[str] = frozenset()
    page_exact: dict[str, str] = field(default_factory=dict)
    page_fetches: dict[str, str] = field(default_factory=dict)
    page_bands: np.ndarray = field(default_factory=lambda: np.zeros((0, BANDS), dtype=np.uint64))
    page_cluster: list[str] = field(default_factory=list)


def _reference_images(reference: pa.Table | None) -> tuple[dict[str, str], np.ndarray, list[str], set[str]]:
    """From earlier kept images: content_hash -> cluster id, their pHashes (M,) with cluster ids, their fetch keys."""
    if reference is None or reference.num_rows == 0:
        return {}, np.zeros(0, dtype=np.uint64), [], set()
    missing = {"record_id", "content_hash", "phash"} - set(reference.column_names)
    if missing:
        raise ValueError(f"reference table lacks columns {sorted(missing)}")
    ids = reference.column("record_id").to_pylist()
    clusters = reference.column("near_dup_cluster").to_pylist() if "near_dup_cluster" in reference.column_names else ids
    clusters = [c or r for c, r in zip(clusters, ids, strict=True)]
    exact = {h: c for h, c in zip(reference.column("content_hash").to_pylist(), clusters, strict=True) if h}
    phashes = reference.column("phash").to_pylist()
    valid = [k for k, h in enumerate(phashes) if h is not None]
    fetches = reference.column("fetch_key").to_pylist() if "fetch_key" in reference.column_names else []
    return exact, np.array([phashes[k] for k in valid], dtype=np.uint64), [clusters[k] for k in valid], set(fetches)


def _merge_references(reference: pa.Table | None, index: DedupIndex | None) -> pa.Table | None:
    """One table of earlier kept images from the `reference` argument and the index's image rows."""
    columns = ["record_id", "content_hash", "phash", "near_dup_cluster"]
    parts = []
    if reference is not None:
        _reference_images(reference)  # validates its columns
        earlier = conform(reference.select([c for c in reference.column_names if c in RECORD_SCHEMA.names]))
        keys = pa.array(compute_fetch_keys(earlier), pa.string())
        parts.append(earlier.select(columns).append_column("fetch_key", keys))
    if index is not None and index.num_rows:
        images = index.of_kind("image").select([*columns, "fetch_key"])
        parts = [p.cast(images.schema) for p in parts] + [images]
    return pa.concat_tables(parts) if parts else None


def load_known(reference: pa.Table | None = None, index: DedupIndex | None = None) -> KnownRecords:
    """KnownRecords from earlier kept images (`reference`: record_id, content_hash, phash, optional
    near_dup_cluster) and the dedup index; raises ValueError if `reference` lacks those columns."""
    exact, phashes, clusters, fetches = _reference_images(_merge_references(reference, index))
    known = KnownRecords(exact, phashes, clusters, frozenset(fetches))
    if index is None or index.num_rows == 0:
        return known
    pages = index.of_kind("text")
    page_clusters = pages.column("near_dup_cluster").to_pylist()
    return KnownRecords(
        *(exact, phashes, clusters, frozenset(fetches)),
        page_exact=dict(zip(pages.column("content_hash").to_pylist(), page_clusters, strict=True)),
        page_fetches=dict(zip(pages.column("fetch_key").to_pylist(), page_clusters, strict=True)),
        page_bands=index.band_matrix(pages),
        page_cluster=page_clusters,
    )


def _check_image(image: Image.Image, cfg: CurateConfig) -> str | None:
    """The drop reason of a decoded, oriented image (size, shape, information), or None if it is usable."""
    if min(image.size) < cfg.min_side:
        return "too_small"
    if max(image.size) > cfg.max_aspect_ratio * min(image.size):
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
        pa.field("in_index", pa.bool_()),
        pa.field("earlier", pa.string()),  # pages: the cluster kept by an earlier run that this page matches
        pa.field("bands", pa.list_(pa.uint64(), BANDS)),
        pa.field("signature", pa.large_list(pa.float32())),  # SIGNATURE_DIM values, for images still kept
    ]
)
SIGNATURE_DIM = 3 * SIGNATURE_SIZE * SIGNATURE_SIZE
MEMBER_COLUMNS = ["g", "record_id", "kind", "fetched_at", "url", "area", "in_index", "cluster", "earlier"]


def _signature_column(signatures: dict[int, np.ndarray], n: int) -> pa.Array:
    """The signature column from numpy arrays directly (a Python list per image costs ~0.5 ms each)."""
    rows = sorted(signatures)
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = SIGNATURE_DIM
    values = np.concatenate([signatures[i] for i in rows]) if rows else np.zeros(0, dtype=np.float32)
    missing = np.ones(n, dtype=bool)
    missing[rows] = False
    return pa.LargeListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(lengths)]), pa.array(values, pa.float32()), mask=pa.array(missing)
    )


def measure_records(
    table: pa.Table, cfg: CurateConfig, known: KnownRecords, first_row: int = 0
) -> tuple[pa.Table, int]:
    """Everything about each row that needs no other row of the run: (FEATURE_SCHEMA table, known duplicates).

    Decodes, measures and checks images; identifies language and checks pages; hashes both; drops rows
    equal or near to records kept by earlier runs (`known`); computes the LSH bands and layout signatures
    the run-wide duplicate search compares. `first_row` is the position of this table's first row in the
    run's input, so shards measured apart still number their rows as one table would.
    """
    table = conform(table, RECORD_SCHEMA)
    n = table.num_rows
    kinds = table.column("kind").to_pylist()
    record_ids = table.column("record_id").to_pylist()
    fetch_keys = compute_fetch_keys(table)
    images = table.column("image").to_pylist()
    texts = table.column("text").to_pylist()
    width = table.column("width").to_pylist()
    height = table.column("height").to_pylist()
    mime = table.column("mime").to_pylist()
    lang = table.column("lang").to_pylist()
    content_hash = table.column("content_hash").to_pylist()
    phash = table.column("phash").to_pylist()
    cluster: list[str | None] = table.column("near_dup_cluster").to_pylist()
    reasons: list[str | None] = [None] * n
    signatures: dict[int, np.ndarray] = {}
    bands: list[list[int] | None] = [None] * n
    in_index = [False] * n
    earlier: list[str | None] = [None] * n
    known_count = 0

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
        in_index[i] = fetch_keys[i] in known.image_fetches
        reasons[i] = _check_image(oriented, cfg)
        if reasons[i] is None:
            signatures[i] = compute_signature(oriented)

    # Duplicates of images kept by earlier runs.
    fresh = [i for i in range(n) if kinds[i] == "image" and reasons[i] is None and not in_index[i]]
    for i in fresh:
        if content_hash[i] in known.image_exact:
            reasons[i], cluster[i] = "exact_duplicate", known.image_exact[content_hash[i]]
            known_count += 1
    fresh = [i for i in fresh if reasons[i] is None]
    nearest, distance = find_nearest(
        np.array([phash[i] for i in fresh], dtype=np.uint64), known.image_phash, cfg.phash_max_distance
    )
    for k in np.flatnonzero(distance <= cfg.phash_max_distance):
        reasons[fresh[k]], cluster[fresh[k]] = "near_duplicate", known.image_cluster[nearest[k]]
        known_count += 1

    # Pages: empty text, language and quality, copies of pages kept before, then what the LSH search needs.
    pages = [i for i in range(n) if kinds[i] == "text"]
    for i in pages:
        if texts[i] is None or not texts[i].strip():
            reasons[i] = "empty_text"
    readable = [i for i in pages if reasons[i] is None]
    quality_reasons, languages = find_text_issues([texts[i] for i in readable], cfg.quality)
    for i, reason, code in zip(readable, quality_reasons, languages, strict=True):
        reasons[i] = reason
        lang[i] = lang[i] or code
        content_hash[i] = hash_text(texts[i])
        in_index[i] = fetch_keys[i] in known.page_fetches
        if reason is None and not in_index[i] and content_hash[i] in known.page_exact:
            reasons[i], cluster[i] = "duplicate_page", known.page_exact[content_hash[i]]
            known_count += 1
    unique = [i for i in readable if reasons[i] is None]
    if cfg.text_near_duplicates and unique:
        keys = compute_text_bands([texts[i] for i in unique])
        matched = match_bands(keys, known.page_bands)
        for k, i in enumerate(unique):
            bands[i] = keys[k].tolist()
            before = known.page_fetches.get(fetch_keys[i])
            earlier[i] = before or (known.page_cluster[matched[k]] if matched[k] >= 0 else None)
            cluster[i] = before or record_ids[i]

    features = pa.table(
        {
            "g": pa.array(np.arange(first_row, first_row + n, dtype=np.int64)),
            "record_id": table.column("record_id"),
            "kind": table.column("kind"),
            "url": table.column("url"),
            "fetched_at": table.column("fetched_at"),
            "reason": pa.array(reasons, pa.string()),
            "cluster": pa.array(cluster, pa.string()),
            "width": pa.array(width, pa.int32()),
            "height": pa.array(height, pa.int32()),
            "mime": pa.array(mime, pa.string()),
            "lang": pa.array(lang, pa.string()),
            "content_hash": pa.array(content_hash, pa.string()),
            "phash": pa.array(phash, pa.uint64()),
            "area": pa.array([(w or 0) * (h or 0) for w, h in zip(width, height, strict=True)], pa.int64()),
            "in_index": pa.array(in_index, pa.bool_()),
            "earlier": pa.array(earlier, pa.string()),
            "bands": pa.array(bands, FEATURE_SCHEMA.field("bands").type),
            "signature": _signature_column(signatures, n),
        },
        schema=FEATURE_SCHEMA,
    )
    return features, known_count


def split_partitions(features: pa.Table, cfg: CurateConfig, partitions: int) -> list[dict[str, pa.Table]]:
    """What each of `partitions` partitions needs from some measured rows, as small tables by role.

    "exact": rows still kept (g, kind, content_hash, fetched_at, url), by content-hash prefix;
    "bands": (g, band, key) of pages for the LSH search, by key; "images": (g, phash, role) of images
    still kept, resident or querying in the partition's pHash prefix buckets.
    """
    live = features.filter(pc.is_null(features.column("reason")))
    exact = live.filter(pc.is_valid(live.column("content_hash"))).select(
        ["g", "kind", "content_hash", "fetched_at", "url"]
    )
    exact_part = partition_of_hash(exact.column("content_hash").to_pylist(), partitions)

    pages = live.filter(pc.is_valid(live.column("bands")))
    page_g = pages.column("g").to_numpy()
    keys = pc.list_flatten(pages.column("bands")).to_numpy(zero_copy_only=False).astype(np.uint64)
    band_g, band = np.repeat(page_g, BANDS), np.tile(np.arange(BANDS, dtype=np.int64), page_g.size)
    band_part = partition_of_band(keys, partitions)

    images = live.filter(pc.equal(live.column("kind"), "image"))
    image_g = images.column("g").to_numpy()
    hashes = images.column("phash").to_numpy(zero_copy_only=False).astype(np.uint64)
    resident, query = image_buckets(hashes, cfg.phash_max_distance)
    resident_part = partition_of_bucket(resident, partitions)
    query_part = partition_of_bucket(query, partitions)

    out = []
    for p in range(partitions):
        res_rows = np.flatnonzero((resident_part == p).any(axis=1))
        query_rows = np.flatnonzero((query_part == p).any(axis=1))
        rows = np.concatenate([res_rows, query_rows])
        role = np.r_[np.zeros(res_rows.size, np.int8), np.ones(query_rows.size, np.int8)]
        out.append(
            {
                "exact": exact.filter(pa.array(exact_part == p)),
                "bands": pa.table(
                    {"g": band_g[band_part == p], "band": band[band_part == p], "key": keys[band_part == p]}
                ),
                "images": pa.table({"g": image_g[rows], "phash": hashes[rows], "role": role}),
            }
        )
    return out


def search_partition(part: dict[str, pa.Table], cfg: CurateConfig) -> dict[str, np.ndarray | pa.Table]:
    """One partition's duplicate search: exact copies (g, original), image candidate links and page links."""
    images = part["images"]
    role = images.column("role").to_numpy()
    g = images.column("g").to_numpy()
    hashes = images.column("phash").to_numpy().astype(np.uint64)
    bands = part["bands"]
    page_links = np.zeros((0, 2), dtype=np.int64)
    if cfg.text_near_duplicates:
        page_links = find_band_links(
            bands.column("g").to_numpy(), bands.column("band").to_numpy(), bands.column("key").to_numpy()
        )
    return {
        "exact": find_exact_groups(part["exact"]),
        "image_links": find_image_links(
            g[role == 1], hashes[role == 1], g[role == 0], hashes[role == 0], cfg.phash_max_distance
        ),
        "page_links": page_links,
    }


def confirm_image_links(links: np.ndarray, features: pa.Table, cfg: CurateConfig) -> np.ndarray:
    """The pHash candidate links (L, 2) whose layout signatures also agree; `features` holds both ends."""
    if len(links) == 0:
        return links
    position = {g: k for k, g in enumerate(features.column("g").to_pylist())}
    flat = pc.list_flatten(features.column("signature")).to_numpy(zero_copy_only=False)
    dim = SIGNATURE_DIM
    valid = pc.is_valid(features.column("signature")).to_numpy(zero_copy_only=False)
    rows = np.full(features.num_rows, -1, dtype=np.int64)
    rows[valid] = np.arange(int(valid.sum()))
    matrix = flat.reshape(-1, dim)
    a = matrix[rows[[position[g] for g in links[:, 0]]]]
    b = matrix[rows[[position[g] for g in links[:, 1]]]]
    return links[close_signatures(a, b, cfg.near_dup_max_signature_distance)]


def select_members(features: pa.Table, wanted: set[int]) -> pa.Table:
    """The MEMBER_COLUMNS of the rows `settle_duplicates` needs: those named in `wanted`, and every page
    that matched a record kept by an earlier run."""
    named = pc.is_in(features.column("g"), pa.array(sorted(wanted), pa.int64()))
    matched = pc.and_(pc.equal(features.column("kind"), "text"), pc.is_valid(features.column("earlier")))
    return features.filter(pc.or_(named, matched)).select(MEMBER_COLUMNS)


def involved_rows(found: dict[str, np.ndarray | pa.Table]) -> set[int]:
    """Every g a search result names (the rows settle_duplicates must see)."""
    exact = found["exact"]
    return (
        set(exact.column("g").to_pylist())
        | set(exact.column("original").to_pylist())
        | set(np.asarray(found["image_links"]).ravel().tolist())
        | set(np.asarray(found["page_links"]).ravel().tolist())
    )


def merge_found(parts: list[dict[str, np.ndarray | pa.Table]]) -> dict[str, np.ndarray | pa.Table]:
    """The search results of all partitions as one."""

    def links(name: str) -> np.ndarray:
        stacked = np.concatenate([np.asarray(p[name]).reshape(-1, 2) for p in parts]) if parts else np.zeros((0, 2))
        return np.unique(stacked.astype(np.int64), axis=0) if len(stacked) else stacked.astype(np.int64)

    exact = pa.concat_tables([p["exact"] for p in parts]) if parts else find_exact_groups(pa.table({}))
    return {"exact": exact, "image_links": links("image_links"), "page_links": links("page_links")}


def apply_settlement(table: pa.Table, features: pa.Table, settlement: Settlement, known: int = 0) -> StageOutput:
    """Kept and dropped rows of `table` (the rows `features` measured), with what measuring filled in and
    what the run-wide search decided; counters for the report (`known`: duplicates of earlier runs)."""
    table = conform(table, RECORD_SCHEMA)
    g = features.column("g").to_pylist()
    reasons = [settlement.reason.get(k, r) for k, r in zip(g, features.column("reason").to_pylist(), strict=True)]
    clusters = [settlement.cluster.get(k, c) for k, c in zip(g, features.column("cluster").to_pylist(), strict=True)]
    updated = table
    for name in ("width", "height", "mime", "lang", "content_hash", "phash"):
        updated = updated.set_column(updated.schema.get_field_index(name), name, features.column(name))
    field_ = RECORD_SCHEMA.field("near_dup_cluster")
    updated = updated.set_column(
        updated.schema.get_field_index("near_dup_cluster"), field_, pa.array(clusters, field_.type)
    )
    kept, dropped = split_by_reason(updated, reasons)
    return StageOutput(kept=kept, dropped=dropped, counters=count_curation(reasons, kept, known))


def count_curation(reasons: Sequence[str | None], kept: pa.Table, known: int) -> dict[str, int]:
    kept_kinds = kept.column("kind").to_pylist()
    return {
        "exact_duplicates": reasons.count("exact_duplicate"),
        "near_duplicates": reasons.count("near_duplicate"),
        "duplicate_pages": reasons.count("duplicate_page"),
        "near_duplicate_pages": reasons.count("near_duplicate_page"),
        "empty_text": reasons.count("empty_text"),
        "undecodable": reasons.count("undecodable"),
        "truncated": reasons.count("truncated"),
        "too_large": reasons.count("too_large"),
        "too_small": reasons.count("too_small"),
        "extreme_aspect_ratio": reasons.count("extreme_aspect_ratio"),
        "low_information": reasons.count("low_information"),
        "low_quality_pages": sum(reasons.count(r) for r in QUALITY_REASONS),
        "unknown_kind": reasons.count("unknown_kind"),
        "known_duplicates": known,
        "images_kept": kept_kinds.count("image"),
        "pages_kept": kept_kinds.count("text"),
    }


def curate(
    table: pa.Table,
    cfg: CurateConfig | None = None,
    reference: pa.Table | None = None,
    *,
    index: DedupIndex | None = None,
    partitions: int = 1,
) -> StageOutput:
    """Check and deduplicate a raw crawl table; every input row ends in kept or dropped, with its reason.

    Images: undecodable, truncated, too_large (pixel limit, before decoding), too_small,
    extreme_aspect_ratio, low_information; then exact_duplicate (same bytes) and near_duplicate (pHash
    and layout signature). Pages: empty_text, the language/quality reasons of `cfg.quality` (when enabled),
    duplicate_page (same normalised text) and near_duplicate_page (MinHash LSH). The first copy in fetch
    order is kept, except that a near-duplicate image cluster keeps its largest image.

    `reference` (optional) holds images kept by earlier runs (record_id, content_hash, phash, and
    near_dup_cluster if present); `index` (optional) is the dedup index of everything kept so far
    (`curation.index.load_index`). New records equal or near to one of those are dropped with that earlier
    cluster's id, so a new crawl never re-adds what is already kept; a row already in them (same record_id,
    url and fetched_at: the same fetch) is kept as before, so rerunning on the same input changes nothing.

    Fills width, height, mime, content_hash and phash for decodable images (width/height after EXIF
    orientation), content_hash and lang for pages, and near_dup_cluster (the representative's record_id) on
    every decodable image and every deduplicated page. Raises ValueError if `table` has columns outside the
    record schema. This is the one-process form of the sharded run (curation.shards), with the same steps;
    `partitions` splits its duplicate search as a cluster would (the answer does not depend on it).
    """
    cfg = cfg or CurateConfig()
    table = conform(table, RECORD_SCHEMA)
    features, known = measure_records(table, cfg, load_known(reference, index))
    found = merge_found([search_partition(part, cfg) for part in split_partitions(features, cfg, partitions)])
    found["image_links"] = confirm_image_links(found["image_links"], features, cfg)
    members = select_members(features, involved_rows(found))
    settlement = settle_duplicates(
        found["exact"],
        found["image_links"],
        found["page_links"],
        members,
        text_near_duplicates=cfg.text_near_duplicates,
    )
    return apply_settlement(table, features, settlement, known + settlement.known)


CURATE = Stage(name="curate", version="3", apply=curate)


def incremental_stage(index: DedupIndex) -> Stage:
    """The curate stage against a dedup index, keyed on the index's content (it is part of the input)."""
    return Stage(
        name=CURATE.name,
        version=f"{CURATE.version}+index-{digest_of(index.table.column('fetch_key').to_pylist())}",
        apply=lambda table, config: curate(table, config, index=index),
    )


def run_incremental_curate(
    root: DataRoot, cfg: CurateConfig | None, inputs: list[str], index_path: str = INDEX_PATH
) -> dict:
    """Curate `inputs` against the dedup index under `root`, write the outputs, then add the kept rows to it.

    What a pipeline calls instead of `run_stage(root, CURATE, cfg, inputs)` so that each crawl is
    deduplicated against everything kept before, without rereading earlier crawls: the index (a few hundred
    bytes per kept record) is the only history read. The run key covers the index's content, so a changed
    index means a new run; rerunning the same inputs keeps the same records and leaves the index unchanged.
    Returns the run_stage report, with `index_rows` added. Not safe for two writers at once (last write wins).
    """
    cfg = cfg or CurateConfig()
    index = load_index(root, index_path)
    report = run_stage(root, incremental_stage(index), cfg, inputs)
    updated = update_index(index, root.read_table(f"{report['output']}/kept"))
    if updated.num_rows != index.num_rows:
        save_index(root, updated, index_path)
    report["index_rows"] = updated.num_rows
    return report
