"""The dedup index: compact signatures of every record already kept, stored beside the data under index/."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import conform
from corpus.store import DataRoot
from curation.minhash import BANDS, NGRAM, ROWS, SEED, compute_text_bands

INDEX_PATH = "index/dedup/kept.parquet"
# What the band keys depend on: an index built with other values cannot be compared with, so it is refused.
INDEX_PARAMS = {"format": 1, "ngram": NGRAM, "bands": BANDS, "rows": ROWS, "seed": SEED}

INDEX_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("fetch_key", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("near_dup_cluster", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("phash", pa.uint64()),
        pa.field("bands", pa.list_(pa.uint64(), BANDS)),
    ],
    metadata={b"flywheel.dedup_index": json.dumps(INDEX_PARAMS, sort_keys=True).encode()},
)


@dataclass(frozen=True)
class DedupIndex:
    """Signatures of kept records (INDEX_SCHEMA rows): ~300 bytes a page, ~200 an image before compression.

    Pages carry their exact-text hash and 14 LSH band keys; images their byte hash and pHash. Each row keeps
    the cluster id it was kept under, so later duplicates point at the record that represents them.
    """

    table: pa.Table
    # The curate run whose commit wrote this state: {"inputs_key": its key without the index, "output": folder}.
    commit: dict[str, str] | None = None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def of_kind(self, kind: str) -> pa.Table:
        return self.table.filter(pc.equal(self.table.column("kind"), kind))

    def band_matrix(self, rows: pa.Table) -> np.ndarray:
        """The band keys (M, BANDS) uint64 of some page rows of this index."""
        if rows.num_rows == 0:
            return np.zeros((0, BANDS), dtype=np.uint64)
        flat = pc.list_flatten(rows.column("bands")).to_numpy(zero_copy_only=False)
        return flat.astype(np.uint64).reshape(rows.num_rows, BANDS)


def compute_fetch_keys(table: pa.Table) -> list[str]:
    """One key per row for "this very fetch": record_id, url and fetched_at hashed together.

    record_id alone is the content, so the same bytes found again at another URL or in a later crawl are a
    new fetch (a duplicate to drop), while a rerun over the same rows finds its own keys (rows to keep).
    """
    columns = [table.column(name).cast(pa.string()).to_pylist() for name in ("record_id", "url", "fetched_at")]
    return [
        hashlib.sha256("\x1f".join(part or "" for part in row).encode()).hexdigest()[:32]
        for row in zip(*columns, strict=True)
    ]


def empty_index() -> DedupIndex:
    return DedupIndex(INDEX_SCHEMA.empty_table())


def _check_params(schema: pa.Schema) -> None:
    stored: Any = (schema.metadata or {}).get(b"flywheel.dedup_index")
    if stored is None or json.loads(stored) != INDEX_PARAMS:
        raise ValueError(f"dedup index built with {stored!r}, this code uses {INDEX_PARAMS}: rebuild it")


def update_index(index: DedupIndex, kept: pa.Table) -> DedupIndex:
    """`index` plus the kept rows of a curate output not in it yet (by fetch key); pure, idempotent.

    Pages are shingled again here (only the new kept ones), so the index needs nothing from curate but its
    kept table. Rows without content_hash (never curated) are refused with ValueError.
    """
    if kept.num_rows == 0:
        return index
    kept = conform(kept)
    if pc.any(pc.is_null(kept.column("content_hash"))).as_py():
        raise ValueError("kept rows lack content_hash: pass the kept table of a curate output")
    keys = pa.array(compute_fetch_keys(kept), pa.string())
    is_new = pc.invert(pc.is_in(keys, value_set=index.table.column("fetch_key")))
    fresh, keys = kept.filter(is_new), keys.filter(is_new)
    if fresh.num_rows == 0:
        return index
    # One row per fetch, even if a table repeats one.
    first = sorted({k: i for i, k in reversed(list(enumerate(keys.to_pylist())))}.values())
    fresh, keys = fresh.take(first), keys.take(first)
    kinds = fresh.column("kind").to_pylist()
    bands: list[list[int] | None] = [None] * fresh.num_rows
    pages = [i for i, k in enumerate(kinds) if k == "text"]
    if pages:
        page_bands = compute_text_bands(fresh.column("text").take(pages).to_pylist())
        for row, key in zip(pages, page_bands.tolist(), strict=True):
            bands[row] = key
    ids = fresh.column("record_id").to_pylist()
    clusters = [c or r for c, r in zip(fresh.column("near_dup_cluster").to_pylist(), ids, strict=True)]
    added = pa.table(
        {
            "record_id": fresh.column("record_id"),
            "fetch_key": keys,
            "kind": fresh.column("kind"),
            "near_dup_cluster": pa.array(clusters, pa.string()),
            "content_hash": fresh.column("content_hash"),
            "phash": fresh.column("phash").cast(pa.uint64()),
            "bands": pa.array(bands, INDEX_SCHEMA.field("bands").type),
        },
        schema=INDEX_SCHEMA,
    )
    return DedupIndex(pa.concat_tables([index.table, added]))


def merge_index_rows(index: DedupIndex, rows: pa.Table) -> DedupIndex:
    """`index` plus the INDEX_SCHEMA `rows` whose fetch key it lacks (the first of any repeated key); pure.

    How a sharded run adds what its shards kept: each shard builds its rows (`update_index(empty_index(),
    kept)`), and the rows, in shard order, are merged once, as `update_index` would over the whole table.
    """
    if rows.num_rows == 0:
        return index
    rows = rows.cast(INDEX_SCHEMA)
    rows = rows.filter(pc.invert(pc.is_in(rows.column("fetch_key"), value_set=index.table.column("fetch_key"))))
    first = sorted({k: i for i, k in reversed(list(enumerate(rows.column("fetch_key").to_pylist())))}.values())
    return DedupIndex(pa.concat_tables([index.table, rows.take(first)])) if first else index


def load_index(root: DataRoot, path: str = INDEX_PATH) -> DedupIndex:
    """The index under `root` (empty if none yet). Raises ValueError if it was built with other MinHash values."""
    if not root.exists(path):
        return empty_index()
    table = root.read_table(path, schema=None)
    _check_params(table.schema)
    commit = (table.schema.metadata or {}).get(_COMMIT_KEY)
    return DedupIndex(table.cast(INDEX_SCHEMA), json.loads(commit) if commit else None)


_COMMIT_KEY = b"flywheel.dedup_commit"


def save_index(root: DataRoot, index: DedupIndex, path: str = INDEX_PATH) -> None:
    """Write the index and its commit as one Parquet file, atomically (a temporary name renamed into place),
    so the rows and the record of which run added them never disagree."""
    metadata = dict(INDEX_SCHEMA.metadata)
    if index.commit is not None:
        metadata[_COMMIT_KEY] = json.dumps(index.commit, sort_keys=True).encode()
    root.write_table(path, index.table.replace_schema_metadata(metadata), row_group_size=65536)
