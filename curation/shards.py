"""Sharded curation: the curate stage run over input shards on any executor, its partial results kept in files.

A run has four rounds, each a map over independent pieces (shards or partitions) that any executor can
spread over machines (a Dask cluster through Prefect in `pipelines`, or a plain loop):

1. measure, per shard: decode, check and hash the shard's rows (`cleaning.measure_records`), write its
   features, and write each partition's keys (`cleaning.split_partitions`) beside them;
2. search, per partition: read that partition's keys from every shard and find exact copies and
   near-duplicate candidate links (`cleaning.search_partition`);
3. gather, per shard: confirm the image links that start in the shard by their layout signatures, and
   read the few rows the settling needs;
4. write, per shard: apply the settled reasons and clusters and write kept/dropped parts.

Between rounds 3 and 4 one process settles the clusters (`partitions.settle_duplicates`) from links and
member rows only. The run is keyed, written and reported like `cleaning.run_incremental_curate` (the same
run key, since it gives the same rows), and its scratch files under `<output>/_work/` are removed once
`_SUCCESS` is written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.stages import (
    MapSteps,
    Shard,
    count_reasons,
    find_finished,
    finish_run,
    map_in_process,
    plan_shards,
    read_shard,
)
from corpus.store import DataRoot
from curation.cleaning import (
    CURATE,
    CurateConfig,
    KnownRecords,
    apply_settlement,
    confirm_image_links,
    count_curation,
    incremental_stage,
    involved_rows,
    load_known,
    measure_records,
    merge_found,
    search_partition,
    select_members,
    split_partitions,
)
from curation.index import INDEX_PATH, empty_index, load_index, merge_index_rows, save_index, update_index
from curation.partitions import Settlement, settle_duplicates

ROLES = ("exact", "bands", "images")


def _features_path(work: str, shard: int) -> str:
    return f"{work}/features/shard-{shard:05d}.parquet"


def _partition_path(work: str, partition: int, shard: int) -> str:
    return f"{work}/partition-{partition:05d}/shard-{shard:05d}.parquet"


def pack_keys(part: dict[str, pa.Table]) -> pa.Table:
    """A partition's key tables from one shard as one table (one file, one object-store request, not three):
    the rows of each role one after another, its columns named `<role>.<column>`, the others null."""
    tables = []
    for role in ROLES:
        table = part[role].cast(pa.schema([f.with_nullable(True) for f in part[role].schema]))
        table = table.rename_columns([f"{role}.{c}" for c in table.column_names])
        tables.append(table.append_column("role", pa.array([role] * table.num_rows, pa.string())))
    return pa.concat_tables(tables, promote_options="default")


def unpack_keys(packed: pa.Table) -> dict[str, pa.Table]:
    """The role tables of `pack_keys` output (of one shard or several concatenated)."""
    out = {}
    for role in ROLES:
        rows = packed.filter(pc.equal(packed.column("role"), role))
        columns = [c for c in packed.column_names if c.startswith(f"{role}.")]
        out[role] = rows.select(columns).rename_columns([c.removeprefix(f"{role}.") for c in columns])
    return out


def measure_shard(
    root: DataRoot, work: str, shard: Shard, cfg: CurateConfig, known: KnownRecords, partitions: int
) -> dict[str, int]:
    """Round 1: measure one shard, write its features and its keys for every partition."""
    features, known_count = measure_records(read_shard(root, shard), cfg, known, shard.first_row)
    root.write_table(_features_path(work, shard.number), features, row_group_size=256)
    for p, part in enumerate(split_partitions(features, cfg, partitions)):
        root.write_table(_partition_path(work, p, shard.number), pack_keys(part))
    return {"known": known_count, "pid": os.getpid()}


def search_partition_files(root: DataRoot, work: str, partition: int, cfg: CurateConfig) -> dict[str, Any]:
    """Round 2: one partition's exact copies and candidate links, from its keys written by every shard."""
    folder = f"{work}/partition-{partition:05d}"
    packed = [pq.read_table(root.path(f), filesystem=root.fs) for f in root.list(folder, ".parquet")]
    return search_partition(unpack_keys(pa.concat_tables(packed)), cfg)


def gather_shard(
    root: DataRoot,
    work: str,
    shards: Sequence[Shard],
    shard: Shard,
    links: np.ndarray,
    wanted: set[int],
    cfg: CurateConfig,
) -> tuple[np.ndarray, pa.Table]:
    """Round 3: the image links starting in `shard` that the layout signatures confirm, and the shard's rows
    that settling needs (`wanted`, and its pages matching earlier runs)."""
    features = pq.read_table(root.path(_features_path(work, shard.number)), filesystem=root.fs)
    members = select_members(features, wanted)
    if len(links) == 0:
        return links.reshape(0, 2), members
    others = sorted(set(links[:, 1].tolist()) - set(features.column("g").to_pylist()))
    tables = [features.select(["g", "signature"])]
    for other in _shards_holding(shards, others):
        theirs = pq.read_table(
            root.path(_features_path(work, other.number)),
            filesystem=root.fs,
            columns=["g", "signature"],
            filters=[("g", "in", [g for g in others if other.first_row <= g < other.first_row + other.rows])],
        )
        tables.append(theirs)
    return confirm_image_links(links, pa.concat_tables(tables), cfg), members


def _shards_holding(shards: Sequence[Shard], rows: Iterable[int]) -> list[Shard]:
    firsts = np.array([s.first_row for s in shards])
    numbers = sorted({int(np.searchsorted(firsts, g, side="right")) - 1 for g in rows})
    return [shards[n] for n in numbers]


def write_shard(
    root: DataRoot, work: str, out: str, shard: Shard, settlement: Settlement, build_index: bool
) -> dict[str, Any]:
    """Round 4: the shard's kept and dropped rows, written as its parts of the run's output."""
    features = pq.read_table(root.path(_features_path(work, shard.number)), filesystem=root.fs)
    result = apply_settlement(read_shard(root, shard), features, settlement)
    root.write_table(f"{out}/kept/part-{shard.number:04d}.parquet", result.kept)
    root.write_table(f"{out}/dropped/part-{shard.number:04d}.parquet", result.dropped)
    return {
        "reasons": result.dropped.column("drop_reason").to_pylist(),
        "kinds_kept": result.kept.column("kind").to_pylist(),
        "index_rows": update_index(empty_index(), result.kept).table if build_index else None,
    }


def _settlement_of(settlement: Settlement, shard: Shard) -> Settlement:
    inside = range(shard.first_row, shard.first_row + shard.rows)
    return Settlement(
        reason={g: r for g, r in settlement.reason.items() if g in inside},
        cluster={g: c for g, c in settlement.cluster.items() if g in inside},
    )


def run_sharded_curate(
    root: DataRoot,
    cfg: CurateConfig | None,
    inputs: Sequence[str],
    *,
    shards: int,
    partitions: int | None = None,
    index_path: str | None = INDEX_PATH,
    map_steps: MapSteps = map_in_process,
) -> dict[str, Any]:
    """Curate `inputs` in `shards` shards and `partitions` partitions (default: as many as shards).

    With `index_path`, deduplicates against the dedup index there and adds the kept rows to it, as
    `cleaning.run_incremental_curate` does, and under the same run key: both give the same rows, so
    either one's finished output serves the other. `map_steps` runs each round's pieces (default: here,
    one after another). Returns the stage report with shards, partitions and per-round seconds added.
    """
    cfg = cfg or CurateConfig()
    partitions = partitions or shards
    index = load_index(root, index_path) if index_path else empty_index()
    stage = incremental_stage(index) if index_path else CURATE
    run_key, out, finished = find_finished(root, stage, cfg, inputs)
    if finished:
        return finished
    started, seconds = time.perf_counter(), {}
    if root.exists(out):  # what an attempt that crashed left behind
        root.fs.rm(root.path(out), recursive=True)
    work = f"{out}/_work"
    planned = plan_shards(root, inputs, shards)
    known = load_known(index=index)

    tick = time.perf_counter()
    measured = map_steps(measure_shard, [(root, work, s, cfg, known, partitions) for s in planned])
    seconds["measure"] = time.perf_counter() - tick

    tick = time.perf_counter()
    found = merge_found(map_steps(search_partition_files, [(root, work, p, cfg) for p in range(partitions)]))
    seconds["search"] = time.perf_counter() - tick

    tick = time.perf_counter()
    links = found["image_links"]
    wanted = involved_rows(found)
    starts = np.searchsorted([s.first_row for s in planned], links[:, 0], side="right") - 1
    gathered = map_steps(
        gather_shard,
        [(root, work, planned, s, links[starts == s.number], wanted, cfg) for s in planned],
    )
    confirmed = np.concatenate([g[0] for g in gathered]) if gathered else links
    members = pa.concat_tables([g[1] for g in gathered]) if gathered else None
    settlement = settle_duplicates(
        found["exact"],
        confirmed,
        found["page_links"],
        members,
        text_near_duplicates=cfg.text_near_duplicates,
    )
    seconds["settle"] = time.perf_counter() - tick

    tick = time.perf_counter()
    written = map_steps(
        write_shard, [(root, work, out, s, _settlement_of(settlement, s), bool(index_path)) for s in planned]
    )
    seconds["write"] = time.perf_counter() - tick

    reasons = [r for w in written for r in w["reasons"]]
    kinds_kept = pa.table({"kind": pa.array([k for w in written for k in w["kinds_kept"]], pa.string())})
    known_count = sum(m["known"] for m in measured) + settlement.known
    root.fs.rm(root.path(work), recursive=True)
    report = finish_run(
        root,
        stage,
        cfg,
        inputs,
        run_key,
        out,
        rows_in=sum(s.rows for s in planned),
        kept=kinds_kept.num_rows,
        dropped_by_reason=count_reasons(pa.table({"drop_reason": pa.array(reasons, pa.string())})),
        counters=count_curation(reasons, kinds_kept, known_count),
        started=started,
        extra={
            "shards": len(planned),
            "partitions": partitions,
            "processes": len({m["pid"] for m in measured}),  # how many processes measured shards
            "round_seconds": {k: round(v, 3) for k, v in seconds.items()},
        },
    )
    if index_path:
        rows = [w["index_rows"] for w in written if w["index_rows"] is not None]
        updated = merge_index_rows(index, pa.concat_tables(rows)) if rows else index
        if updated.num_rows != index.num_rows:
            save_index(root, updated, index_path)
        report["index_rows"] = updated.num_rows
    return report
