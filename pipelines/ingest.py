"""Ingest flows: crawl a source, curate and scrub raw records into the label pool, or both as one scheduled run."""

from __future__ import annotations

from functools import partial
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from corpus.pool import remember_pool
from corpus.settings import get_settings
from corpus.stages import MapSteps, require_inputs, run_stage_sharded
from crawlers.config import CrawlConfig
from crawlers.progress import describe_progress
from crawlers.report import nothing_fetched, report_table
from crawlers.run import crawl_to_root
from curation.curate import run_curate as run_curate_stage
from curation.scrub import SCRUB
from pipelines.config import CurateParams, IngestParams
from pipelines.progress import map_telling
from pipelines.runtime import (
    IO_RETRIES,
    artifact_key,
    data_root_url,
    make_task_runner,
    map_on_task_runner,
    new_run_name,
    open_root,
    task,
)


@task(**IO_RETRIES)
def crawl_source(params: CrawlConfig, data_root: str, crawl_run: str) -> dict[str, Any]:
    """Crawl one source into raw/<crawl_run>/ (a Scrapy subprocess per call; staged under the work dir and
    uploaded when the data root is object storage). A retry resumes the same crawl from its job folder.
    Progress (pages, images, refused, errors, bytes) goes to the run's log as it changes."""
    logger = get_run_logger()
    report = crawl_to_root(
        open_root(data_root),
        params,
        crawl_run=crawl_run,
        work_dir=get_settings().work_dir,
        on_progress=lambda counts: logger.info(describe_progress(counts)),
    )
    report["output"] = f"raw/{crawl_run}"
    create_table_artifact(
        key=artifact_key("crawl", params.source),
        table=report_table(report),
        description=f"crawl {crawl_run}: {report['pages']} pages, {report['images']} images, "
        f"{report.get('finish_reason')}",
    )
    return report


def publish_stage_report(report: dict[str, Any]) -> None:
    """A stage report as a table artifact: rows dropped per reason."""
    rows = [{"reason": reason, "rows": n} for reason, n in report["dropped_by_reason"].items()]
    scale = f", {report['shards']} shards" if report.get("shards", 1) > 1 else ""
    scale += f" x {report['partitions']} partitions" if report.get("partitions") else ""
    create_table_artifact(
        key=artifact_key("stage", report["stage"]),
        table=rows or [{"reason": "-", "rows": 0}],
        description=f"{report['stage']}: {report['kept']} kept, {report['dropped']} dropped "
        f"(run {report['run_key']}{scale})",
    )


def curate_inputs(params: CurateParams, data_root: str, map_steps: MapSteps | None = None) -> dict[str, Any]:
    """The curate stage over the raw inputs, deduplicated against the dedup index; its report artifact. A
    missing or empty input fails before anything is written (the pool pointer stays where it was). By default
    the shards run here one after another, a line of progress after each (pipelines.progress)."""
    require_inputs(open_root(data_root), params.inputs)
    scale = params.scale
    report = run_curate_stage(
        open_root(data_root),
        params.curate,
        params.inputs,
        shards=scale.shards,
        partitions=scale.partitions,
        map_steps=map_steps or map_telling("curate"),
        size=scale.shard_size,
    )
    publish_stage_report(report)
    return report


def scrub_curated(
    params: CurateParams, data_root: str, curated: dict[str, Any], map_steps: MapSteps | None = None
) -> dict[str, Any]:
    """The scrub stage over what curate kept; its report artifact. Shards as in `curate_inputs`."""
    inputs = [f"{curated['output']}/kept"]
    scale = params.scale
    report = run_stage_sharded(
        *(open_root(data_root), SCRUB, params.scrub, inputs, scale.shards),
        map_steps or map_telling("scrub"),
        size=scale.shard_size,
    )
    publish_stage_report(report)
    return report


@task(**IO_RETRIES)
def run_curate(params: CurateParams, data_root: str) -> dict[str, Any]:
    """curate_inputs in this process (one task); a finished identical run is skipped."""
    return curate_inputs(params, data_root)


@task(**IO_RETRIES)
def run_scrub(params: CurateParams, data_root: str, curated: dict[str, Any]) -> dict[str, Any]:
    """scrub_curated in this process (one task); a finished identical run is skipped."""
    return scrub_curated(params, data_root, curated)


@task(**IO_RETRIES)
def remember_latest_pool(data_root: str, pool: str) -> str:
    """Point the data root's pool pointer at `pool`, so later commands need not name it."""
    return remember_pool(open_root(data_root), pool)


class NothingFetchedError(RuntimeError):
    """A crawl stored no page and no image: the guard refused the start URL, the host did not answer, ..."""


@flow(name="crawl", log_prints=True)
def crawl_flow(params: CrawlConfig, data_root: str | None = None) -> dict[str, Any]:
    """Crawl one source into raw/<crawl run>/ and report pages, images and errors. `nothing_fetched` in the
    report is None, or the one-line reason the crawl stored nothing (crawlers.report.nothing_fetched)."""
    report = crawl_source(params, data_root_url(data_root), new_run_name("crawl"))
    return {**report, "nothing_fetched": nothing_fetched(report, params.start_url)}


@flow(name="curate-shards", log_prints=True)
def curate_shards_flow(data_root: str, params: CurateParams) -> dict[str, Any]:
    """curate then scrub in shards: every piece of every round is a task on this flow's task runner (Dask or
    threads); curate's duplicate search runs in hash partitions between its per-shard rounds."""
    curated = curate_inputs(params, data_root, map_on_task_runner)
    scrubbed = scrub_curated(params, data_root, curated, partial(map_on_task_runner, stage="scrub"))
    return {"curate": curated, "scrub": scrubbed}


@flow(name="curate", log_prints=True)
def curate_flow(params: CurateParams) -> dict[str, Any]:
    """Curate raw records (validation, exact and near-duplicates) and scrub what is kept (PII, EXIF, faces).

    The scrubbed kept records become the label pool (`pool`), remembered as the latest one. Sharded or on
    Dask when `params.scale` asks for it (or a Dask cluster is configured), else as two tasks here, each over
    shards sized from the input one after another (bounded memory).
    """
    data_root = data_root_url(params.data_root)
    if params.scale.spread or get_settings().dask_address:
        sharded = curate_shards_flow.with_options(task_runner=make_task_runner(params.scale.dask))
        reports = sharded(data_root, params)
        curated, scrubbed = reports["curate"], reports["scrub"]
    else:
        curated = run_curate(params, data_root)
        scrubbed = run_scrub(params, data_root, curated)
    pool = remember_latest_pool(data_root, f"{scrubbed['output']}/kept")
    return {"curate": curated, "scrub": scrubbed, "pool": pool}


@flow(name="ingest", log_prints=True)
def ingest_flow(params: IngestParams) -> dict[str, Any]:
    """crawl -> curate -> scrub, as one scheduled unit; a crawl that stored nothing fails the run with its reason
    (NothingFetchedError) before curation."""
    crawl_report = crawl_flow(params.crawl, params.data_root)
    if crawl_report.get("nothing_fetched"):
        raise NothingFetchedError(f"crawl fetched nothing: {crawl_report['nothing_fetched']}")
    curate_params = CurateParams(
        inputs=[crawl_report["output"]],
        curate=params.curate,
        scrub=params.scrub,
        scale=params.scale,
        data_root=params.data_root,
    )
    return {"crawl": crawl_report, **curate_flow(curate_params)}
