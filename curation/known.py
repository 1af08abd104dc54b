"""Comparing a run with what earlier runs kept, one hash partition at a time: the index's keys, matches, decisions.

What earlier runs kept (the dedup index, and `curate`'s optional `reference` images) is turned into keys
(`KEYS_SCHEMA`): a row per fetch key, per content hash, per non-zero LSH band key of a page and per resident
pHash bucket of an image, each under a slot in [0, 256) of the key it is found by (`curation.partitions`,
the same slots the run's own keys use). Sorted by slot and stored beside the index, partition p of P reads
only the slots s with s * P // 256 == p, one contiguous range (Parquet row-group statistics skip the rest),
so no task holds the whole index. Each partition matches its run keys with its slice (`match_known`); the
flow then joins the matches of all partitions into one decision per run row (`decide_known`), which the
later rounds apply: the decisions `measure` made per row when every shard read the whole index.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.schema import RECORD_SCHEMA, conform
from corpus.store import DataRoot
from curation.curate_config import CurateConfig
from curation.dedup import find_pairs_within
from curation.index import BANDS, DedupIndex, compute_fetch_keys
from curation.partitions import image_buckets, slot_of_band, slot_of_hash, slots_of_partition

KEYS_SCHEMA = pa.schema(
    [
        pa.field("slot", pa.int16(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # fetch | exact | band | image
        pa.field("kind", pa.string(), nullable=False),
        pa.field("key", pa.string()),  # fetch and exact rows: the fetch key or content hash
        pa.field("band", pa.int16()),  # band rows
        pa.field("band_key", pa.uint64()),
        pa.field("phash", pa.uint64()),  # image rows
        pa.field("pos", pa.int64(), nullable=False),  # the record's place among the known records of its kind
        pa.field("cluster", pa.string(), nullable=False),
    ]
)
# One decision per run row that earlier runs decide something about (null: nothing to change).
DECISION_SCHEMA = pa.schema(
    [
        ("g", pa.int64()),
        ("reason", pa.string()),
        ("cluster", pa.string()),
        ("in_index", pa.bool_()),
        ("earlier", pa.string()),
    ]
)
_MATCH_SCHEMA = pa.schema(
    [
        ("g", pa.int64()),
        ("kind", pa.string()),
        ("role", pa.string()),
        ("rank", pa.int64()),
        ("pos", pa.int64()),
        ("cluster", pa.string()),
    ]
)
_DIGEST_KEY = b"flywheel.index_digest"


def known_rows(reference: pa.Table | None, index: DedupIndex | None) -> pa.Table:
    """What earlier runs kept as (kind, fetch_key, content_hash, phash, bands, cluster) rows: the `reference`
    images (record_id, content_hash, phash, optional near_dup_cluster, url, fetched_at) first, then the
    index's rows in order. Raises ValueError if `reference` lacks its columns."""
    columns = ["kind", "fetch_key", "content_hash", "phash", "bands", "cluster"]
    parts = []
    if reference is not None and reference.num_rows:
        missing = {"record_id", "content_hash", "phash"} - set(reference.column_names)
        if missing:
            raise ValueError(f"reference table lacks columns {sorted(missing)}")
        earlier = conform(reference.select([c for c in reference.column_names if c in RECORD_SCHEMA.names]))
        clusters = pc.coalesce(earlier.column("near_dup_cluster"), earlier.column("record_id"))
        n = earlier.num_rows
        parts.append(
            pa.table(
                [
                    pa.array(["image"] * n, pa.string()),
                    pa.array(compute_fetch_keys(earlier), pa.string()),
                    earlier.column("content_hash"),
                    earlier.column("phash").cast(pa.uint64()),
                    pa.nulls(n, pa.list_(pa.uint64(), BANDS)),
                    clusters,
                ],
                names=columns,
            )
        )
    if index is not None and index.num_rows:
        table = index.table
        clusters = pc.coalesce(table.column("near_dup_cluster"), table.column("record_id"))
        parts.append(table.select(columns[:-1]).append_column("cluster", clusters))
    if not parts:
        return pa.table({c: pa.array([], t) for c, t in zip(columns, _ROW_TYPES, strict=True)})
    return pa.concat_tables([p.cast(parts[-1].schema) for p in parts])


_ROW_TYPES = (pa.string(), pa.string(), pa.string(), pa.uint64(), pa.list_(pa.uint64(), BANDS), pa.string())


def _key_rows(role: str, rows: np.ndarray, slot: np.ndarray, kinds: list, pos: np.ndarray, clusters: list) -> dict:
    return {
        "slot": slot.astype(np.int16),
        "role": [role] * rows.size,
        "kind": [kinds[i] for i in rows],
        "pos": pos[rows],
        "cluster": [clusters[i] for i in rows],
    }


def compute_known_keys(rows: pa.Table) -> pa.Table:
    """The KEYS_SCHEMA table of `known_rows` output, sorted by slot."""
    kinds, clusters = rows.column("kind").to_pylist(), rows.column("cluster").to_pylist()
    is_image = np.array([k == "image" for k in kinds], dtype=bool)
    # A record's place among the known records of its kind: how ties between earlier records are broken.
    pos = np.where(is_image, np.cumsum(is_image) - 1, np.cumsum(~is_image) - 1).astype(np.int64)
    tables = []
    for role, column in (("fetch", "fetch_key"), ("exact", "content_hash")):
        values = rows.column(column).to_pylist()
        have = np.array([i for i, v in enumerate(values) if v], dtype=np.int64)
        keys = [values[i] for i in have]
        part = _key_rows(role, have, slot_of_hash(keys), kinds, pos, clusters)
        tables.append(pa.table({**part, "key": pa.array(keys, pa.string())}))
    pages = np.flatnonzero(pc.is_valid(rows.column("bands")).to_numpy(zero_copy_only=False))
    if pages.size:
        flat = pc.list_flatten(rows.column("bands").take(pages)).to_numpy(zero_copy_only=False).astype(np.uint64)
        row, band = np.repeat(pages, BANDS), np.tile(np.arange(BANDS, dtype=np.int16), pages.size)
        used = flat != 0  # a page without shingles matches nothing
        part = _key_rows("band", row[used], slot_of_band(flat[used]), kinds, pos, clusters)
        tables.append(pa.table({**part, "band": band[used], "band_key": flat[used]}))
    phashes = rows.column("phash").to_pylist()
    images = np.array([i for i in np.flatnonzero(is_image) if phashes[i] is not None], dtype=np.int64)
    if images.size:
        hashes = np.array([phashes[i] for i in images], dtype=np.uint64)
        resident, _ = image_buckets(hashes, 0)
        row = np.repeat(images, resident.shape[1])
        part = _key_rows("image", row, resident.ravel(), kinds, pos, clusters)
        tables.append(pa.table({**part, "phash": np.repeat(hashes, resident.shape[1])}))
    keys = pa.concat_tables([_complete(t) for t in tables])
    return keys.take(pc.sort_indices(keys.column("slot")))


def _complete(columns: pa.Table) -> pa.Table:
    """Some KEYS_SCHEMA columns as a KEYS_SCHEMA table, the others null."""
    n = columns.num_rows
    return pa.table(
        [
            columns.column(f.name).cast(f.type) if f.name in columns.column_names else pa.nulls(n, f.type)
            for f in KEYS_SCHEMA
        ],
        schema=KEYS_SCHEMA,
    )


def slice_of_partition(keys: pa.Table, partition: int, partitions: int) -> pa.Table:
    """The rows of a KEYS_SCHEMA table (sorted by slot) that partition `partition` of `partitions` owns."""
    lo, hi = slots_of_partition(partition, partitions)
    slots = keys.column("slot").to_numpy()
    start, stop = np.searchsorted(slots, [lo, hi])
    return keys.slice(int(start), int(stop - start))


def keys_path_of(index_path: str) -> str:
    """Where the keys of the index at `index_path` are stored: beside it."""
    return index_path.removesuffix(".parquet") + ".keys.parquet"


# Keys per row group of the stored keys: a partition's range read skips the others' row groups.
KEYS_ROW_GROUP = 16384


def save_known_keys(root: DataRoot, path: str, keys: pa.Table, digest: str) -> None:
    """Write keys (sorted by slot) for the index state named `digest`, atomically."""
    keys = keys.replace_schema_metadata({_DIGEST_KEY: digest.encode()})
    root.write_table(path, keys, row_group_size=KEYS_ROW_GROUP)


def stored_keys_digest(root: DataRoot, path: str) -> str | None:
    """The index digest the keys at `path` were written for (None: none there)."""
    if not root.exists(path):
        return None
    metadata = pq.read_schema(root.path(path), filesystem=root.fs).metadata or {}
    value = metadata.get(_DIGEST_KEY)
    return value.decode() if value else None


def read_known_slice(root: DataRoot, path: str, digest: str, partition: int, partitions: int) -> pa.Table:
    """Partition `partition`'s slice of the keys at `path`: a slot-range read. Raises RuntimeError if the keys
    are not those of the index state `digest` (another writer replaced the index during the run)."""
    lo, hi = slots_of_partition(partition, partitions)
    table = pq.read_table(
        root.path(path), filesystem=root.fs, filters=[("slot", ">=", lo), ("slot", "<", hi)], schema=None
    )
    found = (table.schema.metadata or {}).get(_DIGEST_KEY, b"").decode()
    if found != digest:
        raise RuntimeError(f"the dedup index keys {root.uri(path)} changed during the curate run")
    return table.cast(KEYS_SCHEMA)


def _joined(run: pa.Table, known: pa.Table, role: str) -> pa.Table:
    """(g, kind, role, rank 0, pos, cluster) of every pair of a run row and a known row of equal (kind, key)."""
    if run.num_rows == 0 or known.num_rows == 0:
        return _MATCH_SCHEMA.empty_table()
    pairs = run.select(["g", "kind", "key"]).join(
        known.select(["kind", "key", "pos", "cluster"]), keys=["kind", "key"], join_type="inner"
    )
    n = pairs.num_rows
    rank = pa.array(np.zeros(n, np.int64))
    return pa.table(
        [pairs["g"], pairs["kind"], pa.array([role] * n, pa.string()), rank, pairs["pos"], pairs["cluster"]],
        schema=_MATCH_SCHEMA,
    )


def match_known(part: dict[str, pa.Table], known: pa.Table, cfg: CurateConfig) -> pa.Table:
    """One partition's matches of run rows with known records, `_MATCH_SCHEMA` rows: same fetch ("fetch"), same
    content hash ("exact"), pHash within cfg.phash_max_distance ("image", rank = distance) and a shared LSH
    band key ("band", rank = band). `part` holds the partition's run keys (`search.split_partitions` roles
    fetch, exact, images, known_bands); `known` its slice of the keys (KEYS_SCHEMA)."""
    role = known.column("role")
    of = {r: known.filter(pc.equal(role, r)) for r in ("fetch", "exact", "band", "image")}
    exact = part["exact"].rename_columns(["key" if c == "content_hash" else c for c in part["exact"].column_names])
    fetch = part["fetch"].rename_columns(["key" if c == "fetch_key" else c for c in part["fetch"].column_names])
    found = [
        _joined(fetch, of["fetch"], "fetch"),
        _joined(exact, of["exact"], "exact"),
    ]
    bands = (
        part["known_bands"]
        .rename_columns(["g", "band", "band_key"])
        .cast(pa.schema([("g", pa.int64()), ("band", pa.int16()), ("band_key", pa.uint64())]))
    )
    found.append(_band_matches(bands, of["band"]))
    found.append(_image_matches(part["images"], of["image"], cfg.phash_max_distance))
    return pa.concat_tables(found)


def _band_matches(bands: pa.Table, known: pa.Table) -> pa.Table:
    """Band matches with their band as rank: (g, band, band_key) run rows joined with known band rows."""
    if bands.num_rows == 0 or known.num_rows == 0:
        return _MATCH_SCHEMA.empty_table()
    right = known.select(["band", "band_key", "pos", "cluster"])
    pairs = bands.join(right, keys=["band", "band_key"], join_type="inner")
    n = pairs.num_rows
    return pa.table(
        [
            pairs.column("g"),
            pa.array(["text"] * n, pa.string()),
            pa.array(["band"] * n, pa.string()),
            pairs.column("band").cast(pa.int64()),
            pairs.column("pos"),
            pairs.column("cluster"),
        ],
        schema=_MATCH_SCHEMA,
    )


def _image_matches(images: pa.Table, known: pa.Table, max_distance: int) -> pa.Table:
    """Run images querying the partition's buckets within `max_distance` bits of a known resident image."""
    query = images.filter(pc.equal(images.column("role"), 1))
    if query.num_rows == 0 or known.num_rows == 0:
        return _MATCH_SCHEMA.empty_table()
    hashes = query.column("phash").to_numpy().astype(np.uint64)
    reference = known.column("phash").to_numpy().astype(np.uint64)
    pairs = find_pairs_within(hashes, max_distance, reference)
    distance = np.bitwise_count(hashes[pairs[:, 0]] ^ reference[pairs[:, 1]]).astype(np.int64)
    n = len(pairs)
    return pa.table(
        [
            query.column("g").take(pairs[:, 0]),
            pa.array(["image"] * n, pa.string()),
            pa.array(["image"] * n, pa.string()),
            pa.array(distance),
            known.column("pos").take(pairs[:, 1]),
            known.column("cluster").take(pairs[:, 1]),
        ],
        schema=_MATCH_SCHEMA,
    )


def _pick(matches: pa.Table, role: str, order: list[tuple[str, str]]) -> dict[int, tuple[str, str]]:
    """For each g with `role` matches: (kind, cluster) of the first match in `order` (after g)."""
    rows = matches.filter(pc.equal(matches.column("role"), role))
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("g", "ascending"), *order]))
    out: dict[int, tuple[str, str]] = {}
    for g, kind, cluster in zip(*(rows.column(c).to_pylist() for c in ("g", "kind", "cluster")), strict=True):
        out.setdefault(g, (kind, cluster))
    return out


def decide_known(matches: pa.Table, cfg: CurateConfig) -> pa.Table:
    """DECISION_SCHEMA rows (sorted by g) from every partition's `match_known` output.

    A row fetched before (same fetch key) is `in_index`: an image is kept as before, a page keeps its earlier
    cluster. Any other row with the bytes (images) or text (pages) of a known record is an exact_duplicate /
    duplicate_page of it (the last such record), an image within the pHash distance of a known one a
    near_duplicate of the nearest (the first on a tie); a page sharing a band key with a known page gets it
    as `earlier` (lowest band, then first record), for the settling to join.
    """
    fetched = _pick(matches, "fetch", [("pos", "descending")])
    exact = _pick(matches, "exact", [("pos", "descending")])
    near = _pick(matches, "image", [("rank", "ascending"), ("pos", "ascending")])
    bands = _pick(matches, "band", [("rank", "ascending"), ("pos", "ascending")])
    decided: dict[int, list] = {}
    for g, (kind, cluster) in fetched.items():
        page = kind == "text" and cfg.text_near_duplicates
        decided[g] = [None, cluster if page else None, True, cluster if page else None]
    for g, (kind, cluster) in exact.items():
        if g not in fetched:
            decided[g] = ["exact_duplicate" if kind == "image" else "duplicate_page", cluster, False, None]
    for g, (_, cluster) in near.items():
        if g not in fetched and g not in exact:
            decided[g] = ["near_duplicate", cluster, False, None]
    if cfg.text_near_duplicates:
        for g, (_, cluster) in bands.items():
            if g not in fetched and g not in exact:
                decided[g] = [None, None, False, cluster]
    rows = sorted(decided)
    columns = list(zip(*(decided[g] for g in rows), strict=True)) if rows else [[], [], [], []]
    return pa.table([rows, *columns], schema=DECISION_SCHEMA)


def apply_decisions(features: pa.Table, decisions: pa.Table) -> pa.Table:
    """`features` (FEATURE_SCHEMA) with the reason, cluster, in_index and earlier of the `decisions` about its
    rows (those of other rows are ignored)."""
    if decisions.num_rows == 0:
        return features
    by_g = {r["g"]: r for r in decisions.to_pylist()}
    g = features.column("g").to_pylist()
    for name in ("reason", "cluster", "in_index", "earlier"):
        values = features.column(name).to_pylist()
        for k, row in enumerate(g):
            decision = by_g.get(row)
            if decision is not None and decision[name] is not None:
                values[k] = decision[name]
        i = features.schema.get_field_index(name)
        features = features.set_column(
            i, features.schema.field(name), pa.array(values, features.schema.field(name).type)
        )
    return features
