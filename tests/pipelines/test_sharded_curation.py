"""Curation sharded over a 2-worker Dask LocalCluster through Prefect gives the rows one process gives."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from bench.planted import generate_corpus
from corpus.store import DataRoot
from pipelines.config import CurateParams, ScaleParams
from pipelines.ingest import curate_flow
from pipelines.progress import reporting_shards
from pipelines.runtime import PIECE_TASKS_PER_SLOT

pytestmark = pytest.mark.prefect


def decisions(root: DataRoot, folder: str) -> dict[str, list[tuple]]:
    """Each output's rows (id, url, cluster, reason), in order."""
    out = {}
    for part in ("kept", "dropped"):
        table = root.read_table(f"{folder}/{part}")
        out[part] = list(
            zip(
                *(table.column(c).to_pylist() for c in ("record_id", "url", "near_dup_cluster", "drop_reason")),
                strict=True,
            )
        )
    return out


def test_two_dask_workers_give_what_one_process_gives(prefect_api, tmp_path):
    corpus = generate_corpus(images=160, pages=160, seed=11, duplicate_rate=0.2).table
    roots = {name: DataRoot(str(tmp_path / name)) for name in ("one", "dask")}
    bounds = np.linspace(0, corpus.num_rows, 4).astype(int)
    for root in roots.values():
        for k in range(3):
            root.write_table(f"raw/crawl-1/part-{k:04d}.parquet", corpus.slice(bounds[k], bounds[k + 1] - bounds[k]))

    one = curate_flow(CurateParams(inputs=["raw/crawl-1"], data_root=roots["one"].url))
    scale = ScaleParams(shards=4, partitions=3, dask=True)
    lines: list[str] = []
    with reporting_shards(lines.append):
        dask = curate_flow(CurateParams(inputs=["raw/crawl-1"], data_root=roots["dask"].url, scale=scale))

    assert (dask["curate"]["shards"], dask["curate"]["partitions"], dask["curate"]["processes"]) == (4, 3, 2)
    assert dask["curate"]["dropped_by_reason"] == one["curate"]["dropped_by_reason"]
    assert dask["curate"]["dropped_by_reason"]["near_duplicate"] > 0
    assert dask["curate"]["dropped_by_reason"]["near_duplicate_page"] > 0
    for stage in ("curate", "scrub"):
        assert decisions(roots["dask"], dask[stage]["output"]) == decisions(roots["one"], one[stage]["output"])
    assert (
        roots["dask"]
        .read_table(dask["pool"])
        .column("record_id")
        .equals(roots["one"].read_table(one["pool"]).column("record_id"))
    )

    # Every round ran as tasks of the curate-shards subflow, visible in the Prefect UI: PIECE_TASKS_PER_SLOT tasks
    # per worker and round at most (each running the shards or partitions dealt to it), never more than pieces.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def task_names() -> list[str]:
        async with get_client() as client:
            runs = await client.read_task_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["curate-shards"])))
            return [r.name.rsplit("-", 1)[0] for r in runs if r.state and r.state.is_completed()]

    # The shards ran on the workers; their progress lines were told here, by the flow, from each task's results.
    measured = [line.split(",")[0] for line in lines if line.startswith("curate:") and " measured" in line]
    assert measured == [f"curate: shard {k}/4 measured" for k in (1, 2, 3, 4)]
    rows, (kept, dropped) = corpus.num_rows, (dask["curate"]["kept"], dask["curate"]["dropped"])
    written = [line for line in lines if line.startswith("curate: shard") and " written" in line]
    assert written[-1] == f"curate: shard 4/4 written, {rows:,}/{rows:,} rows, {kept:,} kept, {dropped:,} dropped"
    scrubbed = [line for line in lines if line.startswith("scrub: shard")]
    scrub_kept, scrub_dropped = dask["scrub"]["kept"], dask["scrub"]["dropped"]
    assert scrubbed[-1] == (
        f"scrub: shard 4/4 written, {kept:,}/{kept:,} rows, {scrub_kept:,} kept, {scrub_dropped:,} dropped"
    )
    assert len(written) == len(scrubbed) == 4

    names = asyncio.run(task_names())
    counts = {step: names.count(step) for step in set(names)}
    per_round = min(4, PIECE_TASKS_PER_SLOT * 2)  # 4 shards (and 4 partitions) on 2 workers
    searches = counts.pop("curate-search-partition-files")  # one task per hash partition while there are few
    assert 1 < searches <= per_round
    assert counts == {
        "curate-measure-shard": per_round,
        "curate-gather-shard": per_round,
        "curate-write-shard": per_round,
        "scrub-run-shard": per_round,
    }


def test_flywheel_curate_shards_from_the_command_line(prefect_api, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from corpus.settings import get_settings
    from pipelines.cli import app

    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/crawl-1/part-0000.parquet", generate_corpus(images=30, pages=30, seed=2).table)
    monkeypatch.setenv("FLYWHEEL_DATA_ROOT", root.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["curate", "raw/crawl-1", "--shards", "3", "--partitions", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "curate: 60 rows in" in result.output and "scrub: " in result.output and "pool: " in result.output
    report = root.read_json(f"{root.read_json('curated/LATEST_POOL.json')['pool'].removesuffix('/kept')}/_report.json")
    assert (report["stage"], report["shards"]) == ("scrub", 3)
    assert len(root.list(f"{report['inputs'][0]}", ".parquet")) == 3  # curate wrote one part per shard


def test_sharded_progress_goes_to_the_flow_log_when_no_console_listens(prefect_api, tmp_path, caplog):
    root = DataRoot(str(tmp_path / "data"))
    root.write_table("raw/crawl-1/part-0000.parquet", generate_corpus(images=12, pages=12, seed=3).table)
    with caplog.at_level(logging.INFO):
        curate_flow(CurateParams(inputs=["raw/crawl-1"], data_root=root.url, scale=ScaleParams(shards=2)))
    told = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("curate: shard", "scrub: shard"))]
    assert [line.split(",")[0] for line in told if " measured" in line] == [
        "curate: shard 1/2 measured",
        "curate: shard 2/2 measured",
    ]
    assert told[-1].startswith("scrub: shard 2/2 written, ")


def test_the_local_cluster_runs_with_dasks_periodic_work_made_rarer(prefect_api):
    """The workers (and the scheduler, in this process) of make_task_runner's LocalCluster use QUIET_DASK:
    with Dask's defaults, its 20 ms ticks and 10 ms stack samples were most of a sharded run's extra CPU."""
    import dask.config
    from prefect import flow

    from pipelines.runtime import QUIET_DASK, make_task_runner, run_pieces

    keys = sorted(QUIET_DASK)

    @flow(name="read-dask-config")
    def read_on_workers() -> list:
        return run_pieces.submit(dask.config.get, [(key,) for key in keys]).result()

    on_workers = read_on_workers.with_options(task_runner=make_task_runner(True))()
    assert on_workers == [QUIET_DASK[key] for key in keys] == [dask.config.get(key) for key in keys]
