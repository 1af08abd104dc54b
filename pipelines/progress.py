"""Live progress of the curate and scrub stages: one line per finished shard, told to whoever listens here.

The lines are made by the process that maps the pieces (the flow's, for pieces on Dask workers) from each
finished piece's result, so they reach the command's console wherever the pieces ran. With no listener here (a
deployment's run) they go to the Prefect run's log instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger

from corpus.stages import MapSteps, Shard

Listener = Callable[[str], None]

# The listeners of this process (the CLI's console); a flow parameter could not carry them (parameters are JSON).
_listeners: list[Listener] = []


@contextlib.contextmanager
def reporting_shards(listener: Listener) -> Iterator[None]:
    """Hand `listener` a line after each shard the stages finish (here or on Dask workers), while inside."""
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


def tell(line: str) -> None:
    """Hand `line` to this process's listeners, or, with none, to the log of the Prefect run it is in."""
    if _listeners:
        for listener in list(_listeners):
            listener(line)
    elif FlowRunContext.get() is not None or TaskRunContext.get() is not None:
        get_run_logger().info(line)


class ShardTeller:
    """Tells a line for each finished piece of one round of `stage`, in the order they are handed in."""

    def __init__(self, stage: str, args: Sequence[tuple]) -> None:
        shards = [_shard_of(a) for a in args]
        self.tally = ShardTally(stage, len(args), sum(s.rows for s in shards if s is not None))

    def finished(self, step: Callable[..., Any], args: tuple, result: Any) -> None:
        """Count the piece run as `step(*args)` that returned `result`, and tell where the round stands."""
        shard = _shard_of(args)
        line = describe_shard(self.tally, step.__name__, shard, result) if shard is not None else None
        if line:
            tell(line)


def map_telling(stage: str) -> MapSteps:
    """An in-process map (one piece after another, like corpus.stages.map_in_process) that tells a line after
    each shard of `stage`."""

    def run(step: Callable[..., Any], args: list[tuple]) -> list[Any]:
        teller, results = ShardTeller(stage, args), []
        for a in args:
            results.append(step(*a))
            teller.finished(step, a, results[-1])
        return results

    return run
