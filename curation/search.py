"""The curate stage's run-wide duplicate search: partition keys, each partition's links, and applying the settlement."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import StageOutput, split_by_reason
from curation.curate_config import CurateConfig
from curation.measure import SIGNATURE_DIM
from curation.minhash import estimate_jaccard
from curation.partitions import (
    Settlement,
    close_signatures,
    find_band_candidates,
    find_band_links,
    find_exact_groups,
    find_image_links,
    image_buckets,
    partition_of_band,
    partition_of_bucket,
    partition_of_hash,
)

MEMBER_COLUMNS = ["g", "record_id", "kind", "fetched_at", "url", "area", "in_index", "cluster", "earlier"]
# What one partition's search finds: "exact" (g, original) table, "image_links" and "page_links" (L, 2) arrays.
Found = dict[str, np.ndarray | pa.Table]


def split_partitions(
    features: pa.Table, cfg: CurateConfig, partitions: int, with_known: bool = False
) -> list[dict[str, pa.Table]]:
    """What each of `partitions` partitions needs from some measured rows, as small tables by role.

    "exact": rows still kept (g, kind, content_hash, fetched_at, url), by content-hash prefix;
    "bands": (g, band, key) of pages for the LSH search, by key; "images": (g, phash, role) of images
    still kept, resident or querying in the partition's pHash prefix buckets. `with_known` (there is a
    dedup index to match) adds "fetch" (g, kind, fetch_key), by fetch-key prefix, and "known_bands"
    (g, band, key) of the keys the index is matched on (`bands`, or with text_near_dup_verify
    `index_bands`); without it those are empty.
    """
    live = features.filter(pc.is_null(features.column("reason")))
    exact = live.filter(pc.is_valid(live.column("content_hash"))).select(
        ["g", "kind", "content_hash", "fetched_at", "url"]
    )
    exact_part = partition_of_hash(exact.column("content_hash").to_pylist(), partitions)

    searched = _band_rows(live, "bands")
    band_g, band, keys = searched["g"], searched["band"], searched["key"]
    band_part = partition_of_band(keys, partitions)

    images = live.filter(pc.equal(live.column("kind"), "image"))
    image_g = images.column("g").to_numpy()
    hashes = images.column("phash").to_numpy(zero_copy_only=False).astype(np.uint64)
    resident, query = image_buckets(hashes, cfg.phash_max_distance)
    resident_part = partition_of_bucket(resident, partitions)
    query_part = partition_of_bucket(query, partitions)

    fetch = live.select(["g", "kind", "fetch_key"])
    fetch_part = partition_of_hash(fetch.column("fetch_key").to_pylist(), partitions)
    if not with_known:
        fetch, fetch_part = fetch.slice(0, 0), fetch_part[:0]
    known_bands = _band_rows(live, "index_bands" if cfg.text_near_dup_verify else "bands", with_known)
    known_part = partition_of_band(known_bands["key"], partitions)

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
                "fetch": fetch.filter(pa.array(fetch_part == p)),
                "known_bands": pa.table({k: v[known_part == p] for k, v in known_bands.items()}),
            }
        )
    return out


def _band_rows(rows: pa.Table, column: str, wanted: bool = True) -> dict[str, np.ndarray]:
    """{"g", "band", "key"}: one entry per band key of the pages of `rows` that have `column` (none unless
    `wanted`)."""
    pages = rows.filter(pc.is_valid(rows.column(column))) if wanted else rows.slice(0, 0)
    page_g = pages.column("g").to_numpy()
    keys = pc.list_flatten(pages.column(column)).to_numpy(zero_copy_only=False).astype(np.uint64)
    width = keys.size // max(page_g.size, 1)  # every page of a run has as many keys (cfg's banding)
    return {"g": np.repeat(page_g, width), "band": np.tile(np.arange(width, dtype=np.int64), page_g.size), "key": keys}


def without_rows(part: dict[str, pa.Table], rows: np.ndarray) -> dict[str, pa.Table]:
    """A partition's key tables without the rows numbered `rows` (those earlier runs already decided)."""
    if rows.size == 0:
        return part
    drop = pa.array(rows, pa.int64())
    return {role: t.filter(pc.invert(pc.is_in(t.column("g"), value_set=drop))) for role, t in part.items()}


def search_partition(part: dict[str, pa.Table], cfg: CurateConfig) -> Found:
    """One partition's duplicate search: exact copies (g, original), image candidate links and page links
    (with `cfg.text_near_dup_verify`, candidate pairs that `confirm_page_links` checks)."""
    images = part["images"]
    role = images.column("role").to_numpy()
    g = images.column("g").to_numpy()
    hashes = images.column("phash").to_numpy().astype(np.uint64)
    bands = part["bands"]
    page_links = np.zeros((0, 2), dtype=np.int64)
    if cfg.text_near_duplicates:
        find = find_band_candidates if cfg.text_near_dup_verify else find_band_links
        page_links = find(bands.column("g").to_numpy(), bands.column("band").to_numpy(), bands.column("key").to_numpy())
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
    valid = pc.is_valid(features.column("signature")).to_numpy(zero_copy_only=False)
    rows = np.full(features.num_rows, -1, dtype=np.int64)
    rows[valid] = np.arange(int(valid.sum()))
    matrix = flat.reshape(-1, SIGNATURE_DIM)
    close = np.zeros(len(links), dtype=bool)
    # A chunk of links at a time: each compared pair takes 3 x 12 KB of signatures while compared, and the
    # candidates of a shard can be many thousands (a collection of lookalike images has many close pHashes).
    for start in range(0, len(links), _LINKS_AT_ONCE):
        part = links[start : start + _LINKS_AT_ONCE]
        a = matrix[rows[[position[g] for g in part[:, 0]]]]
        b = matrix[rows[[position[g] for g in part[:, 1]]]]
        close[start : start + len(part)] = close_signatures(a, b, cfg.near_dup_max_signature_distance)
    return links[close]


# Candidate links whose signatures are compared at once: 1,024 pairs hold ~37 MB of signatures meanwhile.
_LINKS_AT_ONCE = 1024


def confirm_page_links(links: np.ndarray, features: pa.Table, threshold: float) -> np.ndarray:
    """The page candidate links (L, 2) whose estimated Jaccard (`minhash.estimate_jaccard` of their sketches)
    is >= `threshold`; `features` (g, sketch) holds both ends."""
    if len(links) == 0:
        return links
    pages = features.filter(pc.is_valid(features.column("sketch")))  # every linked page has one
    g = pages.column("g").to_numpy()
    order = np.argsort(g)
    rows = order[np.searchsorted(g[order], links)]  # (L, 2) positions in `pages`
    sketches = pc.list_flatten(pages.column("sketch")).to_numpy(zero_copy_only=False).reshape(pages.num_rows, -1)
    return links[estimate_jaccard(sketches, rows[:, 0], rows[:, 1]) >= threshold]


def select_members(features: pa.Table, wanted: set[int]) -> pa.Table:
    """The MEMBER_COLUMNS of the rows `settle_duplicates` needs: those named in `wanted`, and every page
    that matched a record kept by an earlier run."""
    named = pc.is_in(features.column("g"), pa.array(sorted(wanted), pa.int64()))
    matched = pc.and_(pc.equal(features.column("kind"), "text"), pc.is_valid(features.column("earlier")))
    return features.filter(pc.or_(named, matched)).select(MEMBER_COLUMNS)


def involved_rows(found: Found) -> set[int]:
    """Every g a search result names (the rows settle_duplicates must see)."""
    exact = found["exact"]
    return (
        set(exact.column("g").to_pylist())
        | set(exact.column("original").to_pylist())
        | set(np.asarray(found["image_links"]).ravel().tolist())
        | set(np.asarray(found["page_links"]).ravel().tolist())
    )


def merge_found(parts: list[Found]) -> Found:
    """The search results of all partitions as one."""

    def links(name: str) -> np.ndarray:
        stacked = np.concatenate([np.asarray(p[name]).reshape(-1, 2) for p in parts]) if parts else np.zeros((0, 2))
        return np.unique(stacked.astype(np.int64), axis=0) if len(stacked) else stacked.astype(np.int64)

    exact = pa.concat_tables([p["exact"] for p in parts]) if parts else find_exact_groups(pa.table({}))
    return {"exact": exact, "image_links": links("image_links"), "page_links": links("page_links")}


def apply_settlement(table: pa.Table, features: pa.Table, settlement: Settlement) -> StageOutput:
    """Kept and dropped rows of `table` (the rows `features` measured), with what measuring filled in and
    what the run-wide search decided (counters are the caller's: they need the whole run)."""
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
    return StageOutput(kept=kept, dropped=dropped)
