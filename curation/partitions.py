"""Hash partitioning of duplicate search: which partition sees which row, what each partition finds, and the settling.

The curate stage's duplicate search is split three ways so that no worker needs the corpus, only the
compact keys of its partition:

- exact duplicates: rows partitioned by a prefix of their content hash; equal hashes meet in one partition;
- near-duplicate pages: every (band, LSH key) of a page goes to the partition of that key; pages sharing a
  key meet in one partition, which links them (datatrove's MinHash stage 2 buckets work the same way);
- near-duplicate images: multi-index hashing cut along hash prefixes. The 64-bit pHash has 4 chunks of 16
  bits; a hash lives ("resident") in the bucket of its 6-bit prefix of each chunk, and visits ("queries")
  every bucket whose prefix is within r // 4 bits of its own. Two hashes within r bits agree to within
  r // 4 bits on some chunk (pigeonhole), so the prefix of one is within r // 4 of the other's and the
  pair meets in that bucket, where a full Hamming comparison confirms it. Buckets map onto partitions.

Each partition returns links (pairs of global row numbers); `settle_duplicates` then joins them into
clusters on one machine (union-find over the linked rows only) and decides who is kept. Everything here
is a pure function over numpy arrays and Arrow tables, so a single process (curate) and a cluster
(curation.rounds) run the very same code and must give the very same answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.dedup import find_pairs_within
from curation.minhash import union

# pHash chunking for the image buckets: 4 chunks (as in dedup.find_pairs_within) of which the top 6 bits
# name a bucket: 4 x 64 = 256 buckets (= SLOTS), enough to spread over any sensible number of partitions.
_CHUNKS = 4
_CHUNK_BITS = 16
_PREFIX_BITS = 6
_BUCKETS = _CHUNKS << _PREFIX_BITS


# Every key maps to one of SLOTS slots, and partition p of P owns the slots s with s * P // SLOTS == p: a
# contiguous range, so keys stored sorted by slot (the dedup index's, curation.known) are read a partition at
# a time with one range filter. (More than SLOTS partitions leave the rest empty.)
SLOTS = 256


def slot_of_hash(hashes: Sequence[str]) -> np.ndarray:
    """Slot (N,) int64 of hex hashes (content hashes, fetch keys): their first byte."""
    return np.fromiter((int(h[:2], 16) for h in hashes), dtype=np.int64, count=len(hashes))


def slot_of_band(keys: np.ndarray) -> np.ndarray:
    """Slot of each LSH band key (any shape, uint64): its top byte (keys are mixed hashes)."""
    return (np.asarray(keys, dtype=np.uint64) >> np.uint64(56)).astype(np.int64)


def partition_of_slot(slots: np.ndarray, partitions: int) -> np.ndarray:
    return np.asarray(slots, dtype=np.int64) * partitions // SLOTS


def slots_of_partition(partition: int, partitions: int) -> tuple[int, int]:
    """The slots [lo, hi) that `partition` of `partitions` owns."""
    return -(-partition * SLOTS // partitions), -(-(partition + 1) * SLOTS // partitions)


def partition_of_hash(hashes: Sequence[str], partitions: int) -> np.ndarray:
    """Partition (N,) int64 of hex content hashes (or fetch keys), by the slot of their first byte."""
    return partition_of_slot(slot_of_hash(hashes), partitions)


def partition_of_band(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each LSH band key (any shape, uint64), by the slot of its top byte."""
    return partition_of_slot(slot_of_band(keys), partitions)


def _prefix_masks(radius: int) -> np.ndarray:
    bits = min(radius, _PREFIX_BITS)
    masks = {0}
    for _ in range(bits):
        masks |= {m | (1 << b) for m in masks for b in range(_PREFIX_BITS)}
    return np.array(sorted(masks), dtype=np.int64)


def image_buckets(phashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """(resident buckets (N, 4), query buckets (N, 4 * probes)) int64 of uint64 pHashes (N,), in [0, 256).

    A pair within `max_distance` bits always shares a bucket where one is resident and the other queries.
    """
    phashes = np.asarray(phashes, dtype=np.uint64)
    chunks = np.arange(_CHUNKS, dtype=np.uint64)
    shifts = chunks * np.uint64(_CHUNK_BITS) + np.uint64(_CHUNK_BITS - _PREFIX_BITS)
    prefixes = ((phashes[:, None] >> shifts[None, :]) & np.uint64((1 << _PREFIX_BITS) - 1)).astype(np.int64)
    base = np.arange(_CHUNKS, dtype=np.int64) << _PREFIX_BITS
    resident = base[None, :] + prefixes
    masks = _prefix_masks(max_distance // _CHUNKS)
    query = base[None, :, None] + (prefixes[:, :, None] ^ masks[None, None, :])
    query = query.reshape(len(phashes), _CHUNKS * masks.size)
    return resident, query


def partition_of_bucket(buckets: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each image bucket (any shape): a bucket is its own slot (there are SLOTS of them)."""
    return partition_of_slot(buckets, partitions)


def find_exact_groups(rows: pa.Table) -> pa.Table:
    """Within one partition: every row whose (kind, content_hash) an earlier row already has, and that row.

    `rows` has g (global row number), kind, content_hash, fetched_at, url. "Earlier" is the stable order
    (fetched_at, url, g; nulls last). Returns (g, original) int64 for the later copies.
    """
    if rows.num_rows == 0:
        return pa.table({"g": pa.array([], pa.int64()), "original": pa.array([], pa.int64())})
    keys = [("fetched_at", "ascending", "at_end"), ("url", "ascending", "at_end"), ("g", "ascending", "at_end")]
    rows = rows.take(pc.sort_indices(rows, sort_keys=keys))
    first: dict[tuple[str, str], int] = {}
    dup, orig = [], []
    for g, kind, digest in zip(
        rows.column("g").to_pylist(),
        rows.column("kind").to_pylist(),
        rows.column("content_hash").to_pylist(),
        strict=True,
    ):
        original = first.setdefault((kind, digest), g)
        if original != g:
            dup.append(g)
            orig.append(original)
    return pa.table({"g": pa.array(dup, pa.int64()), "original": pa.array(orig, pa.int64())})


def _buckets(g: np.ndarray, band: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pages with a usable key (not 0) sorted by (band, key, g): their g, whether each opens a bucket, and
    each one's bucket head (the bucket's smallest g)."""
    usable = keys != 0
    g, band, keys = g[usable], band[usable], keys[usable]
    order = np.lexsort((g, keys, band))
    g, band, keys = g[order], band[order], keys[order]
    new_bucket = np.ones(g.size, dtype=bool)
    new_bucket[1:] = (keys[1:] != keys[:-1]) | (band[1:] != band[:-1])
    head = g[np.flatnonzero(new_bucket)[np.cumsum(new_bucket) - 1]] if g.size else g
    return g, new_bucket, head


def find_band_links(g: np.ndarray, band: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Within one partition: links (L, 2) int64 joining pages that share a (band, key); key 0 joins nothing.

    Each page in a bucket is linked to the bucket's smallest g: the clusters are the same whoever heads it.
    """
    g, new_bucket, head = _buckets(g, band, keys)
    if g.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    links = np.stack([head[~new_bucket], g[~new_bucket]], axis=1)
    return np.unique(links, axis=0) if links.size else links.reshape(0, 2)


def find_band_candidates(g: np.ndarray, band: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Within one partition: candidate pairs (L, 2) int64 of pages sharing a (band, key), for a check that may
    refuse some: each page with its bucket's smallest g and with the page before it (g ascending), so a bucket
    of m pages gives < 2m pairs and a page refused by the head can still join a neighbour. Key 0 joins nothing.

    The same pairs `minhash.cluster_verified` checks in one process, so both find the same clusters.
    """
    g, new_bucket, head = _buckets(g, band, keys)
    if g.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    joined = np.flatnonzero(~new_bucket)
    pairs = np.concatenate([np.stack([head[joined], g[joined]], 1), np.stack([g[joined - 1], g[joined]], 1)])
    return np.unique(pairs, axis=0) if pairs.size else pairs.reshape(0, 2)


def find_image_links(
    query_g: np.ndarray, query_hash: np.ndarray, resident_g: np.ndarray, resident_hash: np.ndarray, max_distance: int
) -> np.ndarray:
    """Within one partition: links (L, 2) int64 (smaller g first) of pHashes within `max_distance` bits."""
    if query_g.size == 0 or resident_g.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = find_pairs_within(query_hash.astype(np.uint64), max_distance, resident_hash.astype(np.uint64))
    a, b = query_g[pairs[:, 0]], resident_g[pairs[:, 1]]
    links = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    links = links[links[:, 0] != links[:, 1]]
    return np.unique(links, axis=0) if links.size else links.reshape(0, 2)


def close_signatures(a: np.ndarray, b: np.ndarray, max_distance: float) -> np.ndarray:
    """(L,) bool: are layout signatures a[i] and b[i] (L, D) within `max_distance` mean absolute difference?"""
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    return np.abs(a - b).mean(axis=1) <= max_distance


@dataclass
class Settlement:
    """What the global duplicate search decided, for the rows it changed: reason and cluster per g.

    `known` counts rows dropped as duplicates of records kept by earlier runs.
    """

    reason: dict[int, str] = field(default_factory=dict)
    cluster: dict[int, str] = field(default_factory=dict)
    known: int = 0


def _components(links: np.ndarray) -> list[list[int]]:
    """Connected components (each a sorted list of g) of the graph given by links (L, 2)."""
    if len(links) == 0:
        return []
    nodes, inverse = np.unique(links, return_inverse=True)
    parent = np.arange(nodes.size, dtype=np.int64)
    inverse = inverse.reshape(-1, 2)
    union(parent, inverse[:, 0], inverse[:, 1])
    groups: dict[int, list[int]] = {}
    for node, root in zip(nodes.tolist(), parent.tolist(), strict=True):
        groups.setdefault(root, []).append(node)
    return list(groups.values())


def _rank_key(row: dict) -> tuple:
    # (fetched_at, url, g) ascending with nulls last: the stable order in which "the first copy" is kept.
    at, url = row["fetched_at"], row["url"]
    return (at is None, at or 0, url is None, url or "", row["g"])


def settle_duplicates(
    exact: pa.Table,
    image_links: np.ndarray,
    page_links: np.ndarray,
    members: pa.Table,
    *,
    text_near_duplicates: bool = True,
) -> Settlement:
    """Clusters and reasons from what the partitions found.

    `exact` (g, original) are in-run exact copies; `image_links` are pHash + signature confirmed pairs;
    `page_links` LSH links between pages; `members` holds, for every g those name and every page matched
    to an earlier run (`earlier` set), the columns g, record_id, kind, fetched_at, url, area, in_index,
    cluster, earlier. Images: one representative per cluster (a record kept before if any, else the
    largest, then by url, then first), the rest near_duplicate. Pages: the first of a cluster is kept,
    unless the cluster joins one kept before (then every new member is a near_duplicate_page of it).
    Exact copies take the cluster of their original.
    """
    out = Settlement()
    rows = {r["g"]: r for r in members.to_pylist()}
    copy_of = dict(zip(exact.column("g").to_pylist(), exact.column("original").to_pylist(), strict=True))
    for g in copy_of:
        out.reason[g] = "exact_duplicate" if rows[g]["kind"] == "image" else "duplicate_page"

    for component in _components(image_links):
        live = sorted((rows[g] for g in component if g not in copy_of), key=_rank_key)
        if len(live) < 2:
            continue
        in_index = [r for r in live if r["in_index"]]
        representative = (
            in_index[0] if in_index else min(live, key=lambda r: (-(r["area"] or 0), r["url"] or "", _rank_key(r)))
        )
        for r in live:
            out.cluster[r["g"]] = representative["record_id"]
            if r is not representative:
                out.reason[r["g"]] = "near_duplicate"

    if text_near_duplicates:
        linked: set[int] = set()
        clusters = []
        for component in _components(page_links):
            linked.update(component)
            clusters.append([rows[g] for g in component if g not in copy_of])
        clusters += [[r] for r in rows.values() if r["kind"] == "text" and r["earlier"] and r["g"] not in linked]
        for cluster in clusters:
            live = sorted(cluster, key=_rank_key)
            if not live:
                continue
            joins = next((r["earlier"] for r in live if r["earlier"]), None)
            for r in live:
                if r["in_index"]:
                    continue  # kept before: kept again with its cluster, so a rerun changes nothing
                if joins is not None:
                    out.reason[r["g"]], out.cluster[r["g"]] = "near_duplicate_page", joins
                    out.known += 1
                else:
                    out.cluster[r["g"]] = live[0]["record_id"]
                    if r is not live[0]:
                        out.reason[r["g"]] = "near_duplicate_page"

    for g, original in copy_of.items():
        if original in out.cluster:
            out.cluster[g] = out.cluster[original]
        else:
            out.cluster[g] = rows[original]["cluster"]
    return out


def digest_of(values: Sequence[str]) -> str:
    """A short stable digest of some strings (used to key a run on the dedup index it compared against)."""
    return hashlib.sha256("".join(values).encode()).hexdigest()[:12]
