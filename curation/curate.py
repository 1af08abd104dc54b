"""The curate stage: check images and pages, drop exact and near duplicates, identify language, check quality."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from corpus.schema import RECORD_SCHEMA, conform
from corpus.stages import (
    MapSteps,
    Shard,
    ShardSize,
    Stage,
    StageOutput,
    compute_run_key,
    find_finished,
    finish_run,
    map_in_process,
    plan_shards,
    removed_on_failure,
)
from corpus.store import DataRoot
from curation.curate_config import DROP_REASONS, CurateConfig
from curation.index import (
    INDEX_PATH,
    INDEX_SCHEMA,
    DedupIndex,
    empty_index,
    load_index,
    merge_index_rows,
    save_index,
    update_index,
)
from curation.known import compute_known_keys, keys_path_of, known_rows, save_known_keys, stored_keys_digest
from curation.partitions import digest_of
from curation.quality import QUALITY_REASONS
from curation.rounds import run_rounds
from curation.scratch import INDEX_ROWS, FileScratch, MemoryScratch

# Report counters named after the drop reason they count (the checks), and those named otherwise.
_CHECK_COUNTERS = (
    "empty_text", "undecodable", "truncated", "too_large", "too_small", "extreme_aspect_ratio", "low_information",
    "unknown_kind",
)  # fmt: skip
_DUPLICATE_COUNTERS = {
    "exact_duplicates": "exact_duplicate",
    "near_duplicates": "near_duplicate",
    "duplicate_pages": "duplicate_page",
    "near_duplicate_pages": "near_duplicate_page",
}


def count_curation(dropped_by_reason: dict[str, int], kept_by_kind: dict[str, int], known: int) -> dict[str, int]:
    """The report's counters from the rows dropped per reason, the rows kept per kind and the known duplicates."""
    return {
        **{name: dropped_by_reason.get(reason, 0) for name, reason in _DUPLICATE_COUNTERS.items()},
        **{reason: dropped_by_reason.get(reason, 0) for reason in _CHECK_COUNTERS},
        "low_quality_pages": sum(dropped_by_reason.get(r, 0) for r in QUALITY_REASONS),
        "known_duplicates": known,
        "images_kept": kept_by_kind.get("image", 0),
        "pages_kept": kept_by_kind.get("text", 0),
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
    and layout signature; with `cfg.semantic_near_duplicates` also copies found by local features,
    `curation.copies`: rotated, letterboxed, cropped, overlaid). Pages: empty_text, the language/quality
    reasons of `cfg.quality` (when enabled), duplicate_page (same normalised text) and near_duplicate_page
    (MinHash LSH; with `cfg.text_near_dup_verify` looser bands whose candidate pairs must show estimated
    Jaccard >= 0.7). The first copy in fetch order is kept, except that a near-duplicate image cluster keeps
    its largest image.

    `reference` (optional) holds images kept by earlier runs (record_id, content_hash, phash, and
    near_dup_cluster if present); `index` (optional) is the dedup index of everything kept so far
    (`curation.index.load_index`). New records equal or near to one of those are dropped with that earlier
    cluster's id, so a new crawl never re-adds what is already kept; a row already in them (same record_id,
    url and fetched_at: the same fetch) is kept as before, so rerunning on the same input changes nothing.

    Fills width, height, mime, content_hash and phash for decodable images (width/height after EXIF
    orientation), content_hash and lang for pages, and near_dup_cluster (the representative's record_id) on
    every decodable image and every deduplicated page. Raises ValueError if `table` has columns outside the
    record schema. The rounds of `run_curate` over one in-memory shard; `partitions` splits its duplicate
    search as a cluster would (the answer does not depend on it).
    """
    cfg = cfg or CurateConfig()
    earlier = known_rows(reference, index)
    space = MemoryScratch(
        conform(table, RECORD_SCHEMA), known=compute_known_keys(earlier) if earlier.num_rows else None
    )
    done = run_rounds(space, space.shards(), cfg, partitions)
    kept, dropped = space.output()
    counters = count_curation(done.dropped_by_reason, done.kept_by_kind, done.known)
    return StageOutput(kept=kept, dropped=dropped, counters=counters)


CURATE = Stage(name="curate", version="3", apply=curate, drop_reasons=frozenset(DROP_REASONS))


def index_digest(index: DedupIndex) -> str:
    """What names one state of the dedup index: a digest of its rows' fetch keys."""
    return digest_of(index.table.column("fetch_key").to_pylist())


def curate_stage(index: DedupIndex) -> Stage:
    """The curate stage against a dedup index, keyed on the index's content (it is part of the input)."""
    return Stage(
        name=CURATE.name,
        version=f"{CURATE.version}+index-{index_digest(index)}",
        apply=lambda table, config: curate(table, config, index=index),
        drop_reasons=CURATE.drop_reasons,
    )


def run_curate(
    root: DataRoot,
    cfg: CurateConfig | None,
    inputs: Sequence[str],
    *,
    shards: int | None = None,
    partitions: int | None = None,
    index_path: str | None = INDEX_PATH,
    map_steps: MapSteps = map_in_process,
    size: ShardSize | None = None,
) -> dict[str, Any]:
    """Curate `inputs` in `shards` shards and `partitions` partitions (default: as many as shards), write the
    outputs under `curated/curate-<run key>/` and, with `index_path`, add the kept rows to the dedup index.
    `shards=None` (the default) sizes the shards from the input, at most `size` each (corpus.stages.ShardSize),
    so that a run in one process holds one shard at a time, whatever the input's size.

    With `index_path`, each crawl is deduplicated against everything kept before without rereading earlier
    crawls: the index (a few hundred bytes per kept record) is the only history read, and its content is part
    of the run key; without it, the run key is `run_stage(root, CURATE, ...)`'s. The output does not depend on
    `shards`, `partitions` or `map_steps` (which runs each round's pieces; default: here, one after another),
    so one run key serves them all. Returns the stage report with shards, partitions, processes, per-round
    seconds and `index_rows` added; a finished run's report with `skipped: True`.

    The index update is the last step of the run's commit (`_index_rows/`, a part per shard, is written with the
    output, before `_SUCCESS`; the index, saved atomically, records the run that added them): a run killed before it
    saved the index finishes that on its rerun, and a rerun of the run that made the current index reuses its
    output instead of curating again under the grown index's key. Not safe for two writers of one index at
    once (last write wins).
    """
    cfg = cfg or CurateConfig()
    index = load_index(root, index_path) if index_path else None
    inputs_key = compute_run_key(CURATE, cfg, root.fingerprint(inputs))
    if index is not None and (made_it := _committed_run(root, index, inputs_key)):
        return {**made_it, "skipped": True, "index_rows": index.num_rows}
    stage = curate_stage(index) if index is not None else CURATE
    run_key, out, finished = find_finished(root, stage, cfg, inputs)
    if not finished:
        planned = plan_shards(root, inputs, shards, size)
        scale = (planned, partitions or len(planned), map_steps)
        finished = _curate_into(root, cfg, inputs, stage, run_key, out, *scale, index, index_path)
    return _commit_index(root, finished, index, index_path, inputs_key)


def _curate_into(
    root: DataRoot,
    cfg: CurateConfig,
    inputs: Sequence[str],
    stage: Stage,
    run_key: str,
    out: str,
    planned: list[Shard],
    partitions: int,
    map_steps: MapSteps,
    index: DedupIndex | None,
    index_path: str | None,
) -> dict[str, Any]:
    """Run the rounds into `out` (anything an earlier attempt left there removed first) against `index` (as
    read from `index_path`: each partition's task reads its slice of the index's keys beside it, written here
    first if that index state has none yet), and write its report, its index rows (with an index) and
    `_SUCCESS`; on failure `out` is removed."""
    started = time.perf_counter()
    if root.exists(out):  # what an attempt that crashed left behind
        root.fs.rm(root.path(out), recursive=True)
    known: tuple[str | None, str | None] = (None, None)
    if index is not None and index.num_rows and index_path:
        known = (keys_path_of(index_path), index_digest(index))
        if stored_keys_digest(root, known[0]) != known[1]:
            save_known_keys(root, known[0], compute_known_keys(known_rows(None, index)), known[1])
    space = FileScratch(root, f"{out}/_work", out, *known)
    with removed_on_failure(root, out):
        done = run_rounds(space, planned, cfg, partitions, map_steps, index is not None)
        space.clear()
        extra = {"shards": len(planned), "partitions": partitions, "processes": done.processes}
        return finish_run(
            *(root, stage, cfg, inputs, run_key, out),
            rows_in=sum(s.rows for s in planned),
            kept=sum(done.kept_by_kind.values()),
            dropped_by_reason=done.dropped_by_reason,
            counters=count_curation(done.dropped_by_reason, done.kept_by_kind, done.known),
            started=started,
            extra={**extra, "round_seconds": {k: round(v, 3) for k, v in done.seconds.items()}},
        )


# What outputs written before the index rows were kept one part per shard held: one file of them.
_INDEX_ROWS_FILE = "_index_rows.parquet"


def _committed_run(root: DataRoot, index: DedupIndex, inputs_key: str) -> dict[str, Any] | None:
    """The report of the finished run of these inputs and config whose commit made `index` as it is, if any."""
    commit = index.commit or {}
    out = commit.get("output")
    if commit.get("inputs_key") != inputs_key or not out or not root.exists(f"{out}/_SUCCESS"):
        return None
    return root.read_json(f"{out}/_report.json")


def _commit_index(
    root: DataRoot, report: dict[str, Any], index: DedupIndex | None, index_path: str | None, inputs_key: str
) -> dict[str, Any]:
    """Add a finished run's index rows to the dedup index at `index_path` (idempotent: rows it has are not
    added twice), saved with the run's commit if it grew. The report with `index_rows` added."""
    if index is None or not index_path:
        return report
    out = report["output"]
    if root.exists(f"{out}/{INDEX_ROWS}"):
        rows = root.read_table(f"{out}/{INDEX_ROWS}", schema=INDEX_SCHEMA)
    elif root.exists(f"{out}/{_INDEX_ROWS_FILE}"):
        rows = root.read_table(f"{out}/{_INDEX_ROWS_FILE}", schema=None)
    else:  # an output written before index rows were kept beside it
        rows = update_index(empty_index(), root.read_table(f"{out}/kept")).table
    started = time.perf_counter()
    updated = merge_index_rows(index, rows)
    if updated.num_rows != index.num_rows:
        save_index(root, DedupIndex(updated.table, {"inputs_key": inputs_key, "output": out}), index_path)
    # A serial step of every run, after its stage seconds: what a benchmark of sharding has to count too.
    return {**report, "index_rows": updated.num_rows, "index_commit_seconds": round(time.perf_counter() - started, 3)}
