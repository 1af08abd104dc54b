"""Live progress of the curate and scrub stages: one line per finished shard, told to whoever listens here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from corpus.stages import MapSteps, Shard

Listener = Callable[[str], None]

# The listeners of this process (the CLI's console); a flow parameter could not carry them (parameters are JSON).
_listeners: list[Listener] = []


@contextlib.contextmanager
def reporting_shards(listener: Listener) -> Iterator[None]:
    """Hand `listener` a line after each shard the in-process stages finish, while inside."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


@dataclass
class ShardTally:
    """Running totals of one round over a run's shards."""

    stage: str
    shards: int
    rows: int
    done: int = 0
    rows_done: int = 0
    bytes_done: int = 0
    dropped: int = 0
    kept: int = 0


def _shard_of(args: tuple) -> Shard | None:
    return next((a for a in args if isinstance(a, Shard)), None)


def describe_shard(tally: ShardTally, step: str, shard: Shard, result: dict[str, Any]) -> str | None:
    """Count one finished piece into `tally` and say where the run stands, or None for a step not worth a line.

    Steps: curate's `measure_shard` (rows, content bytes, rows its checks dropped), curate's `write_shard`
    (kept and dropped after the duplicate search) and a row-wise stage's `run_shard` (scrub: kept, dropped).
    """
    tally.done += 1
    where = f"{tally.stage}: shard {tally.done}/{tally.shards}"
    if step == "measure_shard":
        tally.rows_done += result["rows"]
        tally.bytes_done += result["bytes"]
        tally.dropped += result["dropped"]
        return (
            f"{where} measured, {tally.rows_done:,}/{tally.rows:,} rows, {tally.bytes_done / 1e6:,.2f} MB, "
            f"{tally.dropped:,} dropped by checks"
        )
    if step == "write_shard":
        tally.kept += sum(result["kept_by_kind"].values())
        tally.dropped += sum(result["dropped_by_reason"].values())
    elif step == "run_shard":
        tally.kept += result["kept"]
        tally.dropped += sum(result["dropped_by_reason"].values())
    else:
        return None
    tally.rows_done += shard.rows
    return f"{where} written, {tally.rows_done:,}/{tally.rows:,} rows, {tally.kept:,} kept, {tally.dropped:,} dropped"


def map_telling(stage: str) -> MapSteps:
    """An in-process map (one piece after another, like corpus.stages.map_in_process) that tells the listeners
    a line after each shard of `stage`."""

    def run(step: Callable[..., Any], args: list[tuple]) -> list[Any]:
        shards = [_shard_of(a) for a in args]
        rows = sum(s.rows for s in shards if s is not None)
        tally = ShardTally(stage, len(args), rows)
        results = []
        for a, shard in zip(args, shards, strict=True):
            results.append(step(*a))
            line = describe_shard(tally, step.__name__, shard, results[-1]) if shard is not None else None
            for listener in list(_listeners) if line else ():
                listener(line)
        return results

    return run
