"""Matching a run with the dedup index a partition at a time: the decisions, and each task reading its slice only."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from curation_records import by_url

from bench.planted import generate_corpus
from corpus.store import DataRoot
from curation.curate import curate, run_curate
from curation.curate_config import CurateConfig
from curation.index import INDEX_PATH, empty_index, load_index, update_index
from curation.known import (
    compute_known_keys,
    decide_known,
    keys_path_of,
    known_rows,
    match_known,
    slice_of_partition,
)
from curation.measure import measure_records
from curation.partitions import SLOTS, partition_of_slot, slots_of_partition
from curation.scratch import FileScratch
from curation.search import split_partitions

U = "http://127.0.0.1/img/"


def test_copies_of_earlier_kept_images_are_decided_under_their_cluster(raw_table):
    earlier = curate(raw_table.slice(1, 2))  # a.png and b.png kept before
    keys = compute_known_keys(known_rows(None, update_index(empty_index(), earlier.kept)))
    later = pa.concat_tables([raw_table.slice(0, 1), raw_table.slice(4, 1)])  # near_a.jpg, b_copy.png
    features = measure_records(later, CurateConfig())
    matches = []
    for p, part in enumerate(split_partitions(features, CurateConfig(), 3, with_known=True)):
        matches.append(match_known(part, slice_of_partition(keys, p, 3), CurateConfig()))
    decided = decide_known(pa.concat_tables(matches), CurateConfig()).to_pylist()
    ids = by_url(earlier.kept, "record_id")
    assert [(d["g"], d["reason"], d["cluster"], d["in_index"]) for d in decided] == [
        (0, "near_duplicate", ids[U + "a.png"], False),
        (1, "exact_duplicate", ids[U + "b.png"], False),
    ]
    # The same rows again (the same fetches) are in the index: kept as before, nothing dropped.
    again = measure_records(raw_table.slice(1, 2), CurateConfig())
    part = split_partitions(again, CurateConfig(), 1, with_known=True)[0]
    decided = decide_known(match_known(part, keys, CurateConfig()), CurateConfig()).to_pylist()
    assert [(d["reason"], d["in_index"]) for d in decided] == [(None, True), (None, True)]


def test_partitions_own_disjoint_slot_ranges_covering_every_slot():
    for partitions in (1, 2, 3, 7, 8, 300):
        owned = [slots_of_partition(p, partitions) for p in range(partitions)]
        slots = [s for lo, hi in owned for s in range(lo, hi)]
        assert slots == list(range(SLOTS))
        for p, (lo, hi) in enumerate(owned):
            assert all(partition_of_slot(s, partitions) == p for s in range(lo, hi))


@dataclass(frozen=True)
class CountingScratch(FileScratch):
    """A FileScratch that records, per partition, the key rows and Parquet row groups its known task read."""

    reads: dict = field(default_factory=dict, compare=False, hash=False)

    def get_known(self, partition: int, partitions: int) -> pa.Table:
        lo, hi = slots_of_partition(partition, partitions)
        meta = pq.ParquetFile(self.root.path(self.keys_path), filesystem=self.root.fs).metadata
        slot = meta.schema.to_arrow_schema().get_field_index("slot")
        groups = 0
        for k in range(meta.num_row_groups):
            stats = meta.row_group(k).column(slot).statistics
            groups += stats.min < hi and stats.max >= lo
        table = super().get_known(partition, partitions)
        self.reads[partition] = (table.num_rows, groups, meta.num_row_groups)
        return table


def test_each_partition_task_reads_only_its_slice_of_the_index(tmp_path, monkeypatch):
    root = DataRoot(str(tmp_path))
    first = generate_corpus(images=150, pages=150, seed=3, duplicate_rate=0.1).table
    root.write_table("raw/c1/part-0000.parquet", first)
    run_curate(root, None, ["raw/c1"], shards=2)
    index = load_index(root, INDEX_PATH)
    monkeypatch.setattr("curation.known.KEYS_ROW_GROUP", 256)  # many row groups even at this size
    second = generate_corpus(images=40, pages=40, seed=4, duplicate_rate=0.0).table
    root.write_table("raw/c2/part-0000.parquet", pa.concat_tables([second, first.slice(0, 50)]))
    spaces: list[CountingScratch] = []

    def counting(root, work, out, keys_path=None, index_digest=None):
        spaces.append(CountingScratch(root, work, out, keys_path, index_digest))
        return spaces[-1]

    monkeypatch.setattr("curation.curate.FileScratch", counting)
    run_curate(root, None, ["raw/c2"], shards=2, partitions=4)
    keys = pq.read_table(root.path(keys_path_of(INDEX_PATH)), filesystem=root.fs)
    assert keys.num_rows > 4 * 256 and index.num_rows > 0
    reads = spaces[0].reads
    assert sorted(reads) == [0, 1, 2, 3]
    assert sum(rows for rows, _, _ in reads.values()) == keys.num_rows  # every key read once, by its partition
    for p, (rows, groups, total) in reads.items():
        lo, hi = slots_of_partition(p, 4)
        slots = keys.column("slot").to_numpy()
        assert rows == int(((slots >= lo) & (slots < hi)).sum()) < keys.num_rows / 2
        assert groups <= total // 4 + 2  # its own row groups, and at most one shared at either end
