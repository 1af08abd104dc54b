"""The curate stage's one step sequence: four rounds over shards and partitions (scratch spaces: curation.scratch).

A run has four rounds (five against a dedup index), each a map over independent pieces (shards or
partitions) that any executor can spread over machines (a Dask cluster through Prefect in `pipelines`, or
a plain loop):

1. measure, per shard: decode, check and hash the shard's rows (`measure.measure_records`), keep its
   features, and each partition's keys (`search.split_partitions`) beside them;
1b. known, per partition (only when earlier runs kept something): match the partition's keys with its slice
   of the dedup index's keys (`known.match_known`); the flow joins the matches into one decision per row
   (`known.decide_known`) and puts them, for the later rounds to apply;
2. search, per partition: take that partition's keys from every shard and find exact copies and
   near-duplicate candidate links (`search.search_partition`);
3. gather, per shard: confirm the image links that start in the shard by their layout signatures (and,
   with `text_near_dup_verify`, its page candidate links by their MinHash sketches; with
   `semantic_near_duplicates`, its copy candidates, found over every shard's colour descriptors between
   rounds 1 and 2, by their keypoints: `curation.copies`), and take the few rows the settling needs;
4. write, per shard: apply the settled reasons and clusters and put its kept/dropped parts.

Between rounds 3 and 4 one process settles the clusters (`partitions.settle_duplicates`) from links and
member rows only. Where the partial results live is a `Scratch` (`curation.scratch`): `MemoryScratch` for one
table in one process (`curate.curate`), `FileScratch` for files under a run's `<output>/_work/`
(`curate.run_curate`).
A piece is sent names and its own slices only: what earlier runs kept (the dedup index's keys) and the
settlement are read from the scratch space by the piece that needs them (a partition's slot range of the
keys, the settlement as the rows of one shard), so neither a task's arguments nor what it holds grow with
the index.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.stages import MapSteps, Shard, add_counts, map_in_process
from curation.copies import confirm_copy_links, find_copy_candidate_links
from curation.curate_config import CurateConfig
from curation.index import empty_index, update_index
from curation.known import (
    apply_decisions,
    decide_known,
    match_known,
)
from curation.measure import measure_records
from curation.minhash import VERIFY_THRESHOLD
from curation.partitions import Settlement, settle_duplicates
from curation.scratch import Scratch
from curation.search import (
    Found,
    apply_settlement,
    confirm_image_links,
    confirm_page_links,
    involved_rows,
    merge_found,
    search_partition,
    select_members,
    split_partitions,
    without_rows,
)

# What round 3 hands the settling per shard: confirmed image links, member rows, confirmed page links (or None).
Gathered = tuple[np.ndarray, pa.Table, np.ndarray | None]


def measure_shard(space: Scratch, shard: Shard, cfg: CurateConfig, partitions: int) -> dict[str, int]:
    """Round 1: measure one shard, keep its features and its keys for every partition. Its rows, content
    bytes and the rows its own checks dropped (before any duplicate search) come back for progress."""
    table = space.read_input(shard)
    lengths = (pc.binary_length(table.column("image")), pc.utf8_length(table.column("text")))
    content = sum(pc.sum(length).as_py() or 0 for length in lengths)
    features = measure_records(table, cfg, shard.first_row)
    space.put_features(shard, features)
    for p, part in enumerate(split_partitions(features, cfg, partitions, space.has_known())):
        space.put_keys(p, shard, part)
    dropped = features.num_rows - features.column("reason").null_count
    return {"pid": os.getpid(), "rows": shard.rows, "bytes": content, "dropped": dropped}


def match_known_partition(space: Scratch, partition: int, partitions: int, cfg: CurateConfig) -> pa.Table:
    """Round 1b: one partition's matches with what earlier runs kept, from its keys and its slice of theirs."""
    return match_known(space.get_keys(partition), space.get_known(partition, partitions), cfg)


def _decided(space: Scratch) -> np.ndarray:
    """The rows earlier runs already dropped (the run-wide search leaves them out)."""
    decisions = space.get_decisions()
    return decisions.filter(pc.is_valid(decisions.column("reason"))).column("g").to_numpy()


def search_partition_files(space: Scratch, partition: int, cfg: CurateConfig) -> Found:
    """Round 2: one partition's exact copies and candidate links, from the keys every shard put for it (less
    the rows earlier runs already dropped)."""
    return search_partition(without_rows(space.get_keys(partition), _decided(space)), cfg)


def features_of(space: Scratch, shard: Shard) -> pa.Table:
    """The shard's features as measured, with what earlier runs decided about its rows."""
    return apply_decisions(space.get_features(shard), space.get_decisions(shard))


def gather_shard(
    space: Scratch,
    shards: Sequence[Shard],
    shard: Shard,
    links: np.ndarray,
    wanted: set[int],
    cfg: CurateConfig,
    page_links: np.ndarray | None = None,
    copy_links: np.ndarray | None = None,
) -> Gathered:
    """Round 3: the image links starting in `shard` that the layout signatures confirm (and the `copy_links`
    starting in it that their keypoints confirm), the shard's rows that settling needs (`wanted`, and its pages
    matching earlier runs), and the `page_links` starting in it that their sketches confirm (None when not
    given: the links need no check)."""
    features = features_of(space, shard)
    members = select_members(features, wanted)
    confirmed_pages = None
    if page_links is not None:
        check_pages = partial(confirm_page_links, threshold=VERIFY_THRESHOLD)
        confirmed_pages = _confirmed_in_pieces(space, shards, features, page_links, "sketch", check_pages)
    check_images = partial(confirm_image_links, cfg=cfg)
    confirmed = _confirmed_in_pieces(space, shards, features, links, "signature", check_images)
    if copy_links is not None and len(copy_links):
        copies = _confirmed_in_pieces(
            space, shards, features, copy_links, "copy", confirm_copy_links, GATHER_COPY_LINKS
        )
        confirmed = np.concatenate([confirmed, copies])
    return confirmed, members, confirmed_pages


# Links of a shard whose other ends are read at once while gathering (their 12 KB signatures: <= ~50 MB).
GATHER_LINKS = 4096
# The same for copy candidates, whose ~36 KB keypoint blobs (curation.copies) are read instead: <= ~40 MB.
GATHER_COPY_LINKS = 1024


def _confirmed_in_pieces(
    space: Scratch,
    shards: Sequence[Shard],
    features: pa.Table,
    links: np.ndarray,
    column: str,
    confirm: Callable[[np.ndarray, pa.Table], np.ndarray],
    piece: int | None = None,
) -> np.ndarray:
    """The `links` (L, 2) starting in the shard of `features` that `confirm` keeps, given (g, `column`) of both
    ends; the other ends are read from their shards for `piece` (default GATHER_LINKS) links at a time: in a
    collection of lookalike images a shard's links can name rows in every other shard, and holding all of those
    would grow with the input."""
    own = features.select(["g", column])
    mine = set(own.column("g").to_pylist())
    confirmed = [links[:0].reshape(0, 2)]
    piece = piece or GATHER_LINKS
    for start in range(0, len(links), piece):
        part = links[start : start + piece]
        others = sorted(set(part[:, 1].tolist()) - mine)
        tables = [own]
        for other in _shards_holding(shards, others):
            inside = [g for g in others if other.first_row <= g < other.first_row + other.rows]
            tables.append(space.get_features(other, ["g", column], inside))
        confirmed.append(confirm(part, pa.concat_tables(tables)))
    return np.concatenate(confirmed)


def _shards_holding(shards: Sequence[Shard], rows: Iterable[int]) -> list[Shard]:
    firsts = np.array([s.first_row for s in shards])
    numbers = sorted({int(np.searchsorted(firsts, g, side="right")) - 1 for g in rows})
    return [shards[n] for n in numbers]


def write_shard(space: Scratch, shard: Shard, build_index: bool) -> dict[str, Any]:
    """Round 4: the shard's kept and dropped rows under the settlement of its rows, put as its parts of the
    run's output (and, with `build_index`, its dedup index rows). Only counts come back: a run's result does
    not grow with its rows (per-row lists of 10^6 rows were ~70 MB of Python objects in the flow's process)."""
    result = apply_settlement(space.read_input(shard), features_of(space, shard), space.get_settlement(shard))
    space.put_output(shard, result.kept, result.dropped)
    if build_index:
        space.put_index_rows(shard, update_index(empty_index(), result.kept).table)
    return {
        "dropped_by_reason": _value_counts(result.dropped.column("drop_reason")),
        "kept_by_kind": _value_counts(result.kept.column("kind")),
    }


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Rows per value of a string column, nulls left out, sorted by value."""
    counts = pc.value_counts(column.drop_null()).to_pylist()
    return dict(sorted((c["values"], c["counts"]) for c in counts))


@dataclass
class Rounds:
    """What a run of the four rounds tells its caller: rows dropped per reason and kept per kind, duplicates of
    earlier runs, and its timings (the dedup index rows of what was kept are in the scratch space)."""

    dropped_by_reason: dict[str, int]
    kept_by_kind: dict[str, int]
    known: int
    processes: int
    seconds: dict[str, float]


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._tick = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self._tick = now - self._tick, now


def settle(found: Found, gathered: list[Gathered], cfg: CurateConfig) -> Settlement:
    """Join the confirmed links into clusters and decide who is kept (one process, links and members only)."""
    confirmed = np.concatenate([g[0] for g in gathered]) if gathered else found["image_links"]
    members = pa.concat_tables([g[1] for g in gathered]) if gathered else None
    page_links = found["page_links"]
    if cfg.text_near_dup_verify and gathered:
        page_links = np.concatenate([g[2] for g in gathered])
    return settle_duplicates(
        found["exact"], confirmed, page_links, members, text_near_duplicates=cfg.text_near_duplicates
    )


def run_rounds(
    space: Scratch,
    planned: Sequence[Shard],
    cfg: CurateConfig,
    partitions: int,
    map_steps: MapSteps = map_in_process,
    build_index: bool = False,
) -> Rounds:
    """The curate stage's steps, in order, over `planned` shards and `partitions` partitions of `space`.

    Each piece gets the rows of its own shard (links, wanted rows) and reads the rest from `space`.
    """
    clock = _Clock()
    measured = map_steps(measure_shard, [(space, s, cfg, partitions) for s in planned])
    clock.lap("measure")
    copies = np.zeros((0, 2), dtype=np.int64)
    if cfg.semantic_near_duplicates:  # one process reads every shard's colours: COLOUR_DIM floats per image
        copies = find_copy_candidate_links(pa.concat_tables([space.get_features(s, ["g", "colour"]) for s in planned]))
        clock.lap("copy candidates")
    known = 0
    if space.has_known():
        matches = map_steps(match_known_partition, [(space, p, partitions, cfg) for p in range(partitions)])
        decisions = decide_known(pa.concat_tables(matches), cfg)
        space.put_decisions(decisions)
        known = decisions.num_rows - decisions.column("reason").null_count
        clock.lap("known")
    found = merge_found(map_steps(search_partition_files, [(space, p, cfg) for p in range(partitions)]))
    clock.lap("search")
    links, pages = found["image_links"], found["page_links"]
    wanted = np.array(sorted(involved_rows(found) | set(copies.ravel().tolist())), dtype=np.int64)
    firsts = [s.first_row for s in planned]
    starts, page_starts, copy_starts = (np.searchsorted(firsts, x[:, 0], "right") - 1 for x in (links, pages, copies))
    wanted_in = np.split(wanted, np.searchsorted(wanted, firsts[1:]))
    pieces = [
        (space, planned, s, links[starts == k], set(wanted_in[k].tolist()), cfg, page_links, copies[copy_starts == k])
        for k, s in enumerate(planned)
        for page_links in [pages[page_starts == k] if cfg.text_near_dup_verify else None]
    ]
    gathered = map_steps(gather_shard, pieces)
    clock.lap("gather")
    settlement = settle(found, gathered, cfg)
    space.put_settlement(settlement)
    clock.lap("settle")
    written = map_steps(write_shard, [(space, s, build_index) for s in planned])
    clock.lap("write")
    return Rounds(
        dropped_by_reason=dict(sorted(add_counts(w["dropped_by_reason"] for w in written).items())),
        kept_by_kind=dict(sorted(add_counts(w["kept_by_kind"] for w in written).items())),
        known=known + settlement.known,
        processes=len({m["pid"] for m in measured}),
        seconds=clock.seconds,
    )
