"""The stage runner: pure `apply(table, cfg) -> StageOutput` functions, run with reports and run keys."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from corpus.schema import RECORD_SCHEMA, RecordSchemaError, check_records, conform
from corpus.store import DataRoot


@dataclass
class StageOutput:
    """What a stage returns: rows kept, rows dropped (each with `drop_reason`), and counters."""

    kept: pa.Table
    dropped: pa.Table
    counters: dict[str, int] = field(default_factory=dict)


def split_by_reason(table: pa.Table, reasons: Sequence[str | None]) -> tuple[pa.Table, pa.Table]:
    """Split `table` into (kept, dropped) by a per-row reason; None keeps the row.

    The dropped rows carry their reason in `drop_reason`, so nothing is lost silently.
    """
    if len(reasons) != table.num_rows:
        raise ValueError(f"{len(reasons)} reasons for {table.num_rows} rows")
    reason_array = pa.array(list(reasons), type=pa.string())
    is_dropped = pc.is_valid(reason_array)
    kept = table.filter(pc.invert(is_dropped))
    dropped = table.filter(is_dropped)
    dropped_reasons = reason_array.filter(is_dropped)
    if "drop_reason" in dropped.column_names:
        dropped = dropped.set_column(dropped.schema.get_field_index("drop_reason"), "drop_reason", dropped_reasons)
    else:
        dropped = dropped.append_column("drop_reason", dropped_reasons)
    return kept, dropped


def count_reasons(dropped: pa.Table) -> dict[str, int]:
    """Rows dropped per reason."""
    if dropped.num_rows == 0 or "drop_reason" not in dropped.column_names:
        return {}
    return dict(sorted(Counter(dropped.column("drop_reason").to_pylist()).items()))


@dataclass(frozen=True)
class Stage:
    """A named, versioned pure function over record tables; bump `version` when its output changes.

    `drop_reasons` are the only reasons it may give a dropped row: the runner refuses any other, so a
    typo or a new reason cannot slip into reports and releases undeclared.
    """

    name: str
    version: str
    apply: Callable[[pa.Table, Any], StageOutput]
    drop_reasons: frozenset[str] = frozenset()


class UndeclaredDropReason(ValueError):
    """A stage dropped rows with a reason it did not declare in `Stage.drop_reasons`."""


def check_drop_reasons(stage: Stage, reasons: Iterable[str | None]) -> None:
    """Raise UndeclaredDropReason naming the stage and the reasons (None = kept) it did not declare."""
    undeclared = sorted({r for r in reasons if r is not None} - stage.drop_reasons)
    if undeclared:
        raise UndeclaredDropReason(
            f"stage {stage.name} dropped rows with undeclared reason(s) {undeclared}; "
            f"declared: {sorted(stage.drop_reasons)}"
        )


def compute_run_key(stage: Stage, cfg: BaseModel | None, input_fingerprint: Any) -> str:
    """Hash of (stage version, config, input fingerprint): equal keys mean equal outputs."""
    payload = {
        "stage": stage.name,
        "version": stage.version,
        "config": cfg.model_dump(mode="json") if cfg is not None else None,
        "inputs": input_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_finished(root: DataRoot, stage: Stage, cfg: BaseModel | None, inputs: Sequence[str], area: str = "curated"):
    """(run key, output folder, report of a finished identical run or None) for running `stage` on `inputs`."""
    run_key = compute_run_key(stage, cfg, root.fingerprint(inputs))
    out = f"{area}/{stage.name}-{run_key}"
    if root.exists(f"{out}/_SUCCESS") and root.read_bytes(f"{out}/_SUCCESS").decode() == run_key:
        return run_key, out, {**root.read_json(f"{out}/_report.json"), "skipped": True}
    return run_key, out, None


def finish_run(
    root: DataRoot,
    stage: Stage,
    cfg: BaseModel | None,
    inputs: Sequence[str],
    run_key: str,
    out: str,
    *,
    rows_in: int,
    kept: int,
    dropped_by_reason: dict[str, int],
    counters: dict[str, Any],
    started: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check that no row was lost and every drop reason is declared, then write `_report.json` and, last,
    `_SUCCESS`; returns the report."""
    check_drop_reasons(stage, dropped_by_reason)
    dropped = sum(dropped_by_reason.values())
    if kept + dropped != rows_in:
        raise RuntimeError(f"stage {stage.name} lost rows: {rows_in} in, {kept} kept + {dropped} dropped")
    report = {
        "stage": stage.name,
        "version": stage.version,
        "run_key": run_key,
        "output": out,
        "inputs": list(inputs),
        "config": cfg.model_dump(mode="json") if cfg is not None else None,
        "rows_in": rows_in,
        "kept": kept,
        "dropped": dropped,
        "dropped_by_reason": dict(sorted(dropped_by_reason.items())),
        "counters": counters,
        "seconds": round(time.perf_counter() - started, 3),
        "finished_at": datetime.now(UTC).isoformat(),
        "skipped": False,
        **(extra or {}),
    }
    root.write_json(f"{out}/_report.json", report)
    root.write_bytes(f"{out}/_SUCCESS", run_key.encode())
    return report


def run_stage(
    root: DataRoot,
    stage: Stage,
    cfg: BaseModel | None,
    inputs: Sequence[str],
    area: str = "curated",
) -> dict[str, Any]:
    """Run `stage` over the kept rows under `inputs` and write `<area>/<stage>-<key>/`.

    Writes `kept/part-0000.parquet`, `dropped/part-0000.parquet`, `_report.json` and, last,
    `_SUCCESS` holding the run key. A run whose `_SUCCESS` already exists is skipped and its
    report returned with `skipped: True`. Returns the report, which names the output folder.
    """
    return run_stage_sharded(root, stage, cfg, inputs, shards=1, area=area)


@contextmanager
def removed_on_failure(root: DataRoot, out: str) -> Iterator[None]:
    """Remove the output folder `out` if the block raises: a failed run leaves no parts behind."""
    try:
        yield
    except BaseException:
        if root.exists(out):
            root.fs.rm(root.path(out), recursive=True)
        raise


# A map over pieces: fn applied to each argument tuple, results in order (a loop here, tasks on a cluster).
MapSteps = Callable[[Callable[..., Any], list[tuple]], list[Any]]


def map_in_process(fn: Callable[..., Any], args: list[tuple]) -> list[Any]:
    return [fn(*a) for a in args]


@dataclass(frozen=True)
class Shard:
    """A run of consecutive input rows: `pieces` are (file, first row, end row) slices of input files."""

    number: int
    first_row: int
    pieces: tuple[tuple[str, int, int], ...]

    @property
    def rows(self) -> int:
        return sum(stop - start for _, start, stop in self.pieces)


def list_input_files(root: DataRoot, inputs: Sequence[str]) -> list[str]:
    """The Parquet files of `inputs` in the order `DataRoot.read_tables` concatenates them."""
    files: list[str] = []
    for relpath in inputs:
        files += [relpath] if relpath.endswith(".parquet") else root.list(relpath, ".parquet")
    return files


def require_inputs(root: DataRoot, inputs: Sequence[str]) -> int:
    """The rows of raw `inputs` to run a first stage on. FileNotFoundError (one line, naming it) for an input
    that does not exist or holds no Parquet file, ValueError when none holds a row: a typo or an empty crawl
    must fail, not make an empty pool."""
    if not inputs:
        raise ValueError("no inputs given")
    for relpath in inputs:
        if not root.exists(relpath):
            raise FileNotFoundError(f"input {relpath} does not exist under {root.url}")
        if not list_input_files(root, [relpath]):
            raise FileNotFoundError(f"input {relpath} under {root.url} holds no Parquet file")
    rows = sum(check_input_file(root, f) for f in list_input_files(root, inputs))
    if rows == 0:
        raise ValueError(f"inputs {', '.join(inputs)} hold no rows: nothing to curate")
    return rows


# What Arrow raises for bytes that are no Parquet file, or a Parquet file it cannot read.
_UNREADABLE = (pa.ArrowException, OSError, EOFError)


def check_input_file(root: DataRoot, relpath: str) -> int:
    """The row count of a raw input file, after checking it is a record table: a readable Parquet file whose
    columns are record-schema columns of the right types, the non-nullable ones present and never null. Reads
    the footer and the non-nullable columns only. Raises RecordSchemaError naming the file and the column."""
    try:
        parquet = pq.ParquetFile(root.path(relpath), filesystem=root.fs)
        schema = parquet.schema_arrow
    except _UNREADABLE as exc:
        raise RecordSchemaError(f"not a readable Parquet file ({type(exc).__name__}: {exc})", relpath) from exc
    check_records(schema, relpath)
    required = [f.name for f in RECORD_SCHEMA if not f.nullable]
    try:
        check_records(parquet.read(columns=required), relpath)
    except _UNREADABLE as exc:
        raise RecordSchemaError(f"unreadable data ({type(exc).__name__}: {exc})", relpath) from exc
    return parquet.metadata.num_rows


# Automatic shards (a stage asked for `shards=None`): at most this many rows, or this many bytes of uncompressed
# input (Parquet footers), per shard, whichever comes first; shards run one after another in one process, so the
# run holds one shard at a time whatever the input's size. 2,000 rows: a few seconds of curating, and ~25 MB of
# curate's features (a 12 KB layout signature per image); 128 MiB: scrub holds a shard's images as fetched and as
# re-encoded at once. Measured with bench/import.py (peak RSS of 2,000 vs 10,000 images).
AUTO_SHARD_ROWS = 2_000
AUTO_SHARD_BYTES = 128 * 2**20


@dataclass(frozen=True)
class ShardSize:
    """The most rows and uncompressed bytes of input one automatic shard holds."""

    rows: int = AUTO_SHARD_ROWS
    bytes: int = AUTO_SHARD_BYTES


def count_auto_shards(rows: int, data_bytes: int, size: ShardSize) -> int:
    """How many shards keep each within `size` for an input of `rows` rows and `data_bytes` bytes (at least 1)."""
    return max(1, -(-rows // size.rows), -(-data_bytes // size.bytes))


def _data_bytes(root: DataRoot, relpath: str) -> int:
    """Uncompressed bytes of a Parquet file's data (its row groups' total_byte_size, from the footer)."""
    meta = pq.ParquetFile(root.path(relpath), filesystem=root.fs).metadata
    return sum(meta.row_group(k).total_byte_size for k in range(meta.num_row_groups))


def plan_shards(
    root: DataRoot, inputs: Sequence[str], shards: int | None, size: ShardSize | None = None
) -> list[Shard]:
    """Cut the rows of `inputs` into at most `shards` runs of nearly equal length (from Parquet footers); with
    `shards=None`, into as many as keep each within `size` (default ShardSize()).

    Every input file is checked first (`check_input_file`), so a bad one is refused before a stage writes.
    """
    if shards is not None and shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    files = list_input_files(root, inputs)
    counts = [check_input_file(root, f) for f in files]
    total = sum(counts)
    if shards is None:
        shards = count_auto_shards(total, sum(_data_bytes(root, f) for f in files), size or ShardSize())
    bounds = np.linspace(0, total, min(shards, max(total, 1)) + 1).round().astype(int).tolist()
    starts = np.cumsum([0, *counts]).tolist()[:-1]
    planned = []
    for number, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        pieces = tuple(
            (f, max(lo - start, 0), min(hi - start, n))
            for f, start, n in zip(files, starts, counts, strict=True)
            if start < hi and start + n > lo
        )
        planned.append(Shard(number, lo, pieces))
    return planned


def read_input_rows(root: DataRoot, relpath: str, start: int, stop: int) -> pa.Table:
    """Rows [start, stop) of a raw input file, checked and conformed to the record schema (RecordSchemaError
    naming the file and the column otherwise)."""
    try:
        table = pq.read_table(root.path(relpath), filesystem=root.fs).slice(start, stop - start)
    except _UNREADABLE as exc:
        raise RecordSchemaError(f"unreadable data ({type(exc).__name__}: {exc})", relpath) from exc
    check_records(table, relpath)
    return conform(table, RECORD_SCHEMA, relpath)


def read_shard(root: DataRoot, shard: Shard) -> pa.Table:
    """The shard's rows, checked and conformed to the record schema."""
    parts = [read_input_rows(root, f, start, stop) for f, start, stop in shard.pieces]
    return pa.concat_tables(parts) if parts else RECORD_SCHEMA.empty_table()


def add_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per-key sums of some counters (zeros kept)."""
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def run_shard(root: DataRoot, stage: Stage, cfg: BaseModel | None, shard: Shard, out: str) -> dict[str, Any]:
    """Apply a row-wise stage to one shard and write its kept and dropped parts; its counts for the report."""
    result = stage.apply(read_shard(root, shard), cfg)
    kept, dropped = conform(result.kept, RECORD_SCHEMA), conform(result.dropped, RECORD_SCHEMA)
    check_drop_reasons(stage, dropped.column("drop_reason").to_pylist())  # before anything is written
    root.write_table(f"{out}/kept/part-{shard.number:04d}.parquet", kept)
    root.write_table(f"{out}/dropped/part-{shard.number:04d}.parquet", dropped)
    return {"kept": kept.num_rows, "dropped_by_reason": count_reasons(dropped), "counters": result.counters}


def run_stage_sharded(
    root: DataRoot,
    stage: Stage,
    cfg: BaseModel | None,
    inputs: Sequence[str],
    shards: int | None = None,
    map_steps: MapSteps = map_in_process,
    area: str = "curated",
    size: ShardSize | None = None,
) -> dict[str, Any]:
    """`run_stage` for a stage whose rows do not depend on each other (scrub): one piece per shard.

    Same run key and rows as `run_stage` (one part file per shard instead of one); numeric counters add up.
    `shards=None` sizes the shards from the input (`plan_shards`).
    """
    run_key, out, finished = find_finished(root, stage, cfg, inputs, area)
    if finished:
        return finished
    started = time.perf_counter()
    if root.exists(out):  # parts of an attempt that crashed
        root.fs.rm(root.path(out), recursive=True)
    planned = plan_shards(root, inputs, shards, size)
    with removed_on_failure(root, out):
        results = map_steps(run_shard, [(root, stage, cfg, s, out) for s in planned])
        return finish_run(
            root,
            stage,
            cfg,
            inputs,
            run_key,
            out,
            rows_in=sum(s.rows for s in planned),
            kept=sum(r["kept"] for r in results),
            dropped_by_reason=add_counts(r["dropped_by_reason"] for r in results),
            counters=add_counts(r["counters"] for r in results),
            started=started,
            extra={"shards": len(planned)},
        )


def trace_reports(root: DataRoot, output: str) -> list[dict[str, Any]]:
    """The reports of the stage runs that made `output` (a stage folder or its kept/), newest first,
    followed back through each run's single input; a summary of each (no configs, no paths)."""
    reports, folder = [], output.removesuffix("/kept")
    while root.exists(f"{folder}/_report.json"):
        report = root.read_json(f"{folder}/_report.json")
        reports.append(
            {k: report.get(k) for k in ("stage", "run_key", "rows_in", "kept", "dropped_by_reason", "counters")}
        )
        inputs = report.get("inputs") or []
        if len(inputs) != 1:
            break
        folder = inputs[0].removesuffix("/kept")
    return reports
