"""Prefect tasks: thin wrappers that do the I/O around the packages' pure functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from corpus.releases import ReleaseConfig, build_release
from corpus.settings import get_settings
from corpus.stages import Stage, run_stage, run_stage_sharded, trace_reports
from corpus.store import DataRoot, open_data_root
from crawlers.report import report_table
from crawlers.run import crawl_to_root
from curation.cleaning import CURATE, run_incremental_curate
from curation.privacy import SCRUB
from curation.shards import run_sharded_curate
from labeling.annotators import SimulatedAnnotator, simulate_labeling
from labeling.client import LabelStudioClient
from labeling.label_errors import flag_label_errors
from labeling.quality import (
    aggregate_dawid_skene,
    aggregate_majority,
    build_scorecards,
    compute_agreement,
    compute_pairwise_agreement,
    find_review_items,
)
from labeling.rounds import RoundPlan, add_gold, attach_labels, check_stopping, choose_stop_set, plan_round
from labeling.sync import pull_annotations, push_tasks, read_annotations
from labeling.tasks import (
    attach_media,
    build_label_config,
    build_tasks,
    export_media,
    media_uri,
)
from pipelines.config import CrawlParams, LabelRoundParams, SimulationParams
from training.predict import predict_pool
from training.registry import latest_model
from training.train import TrainConfig, train_model

STAGES: dict[str, Stage] = {"curate": CURATE, "scrub": SCRUB}
IO_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30]}

DATASET_RELEASED = "flywheel.dataset.released"
ROUND_PASSED = "flywheel.round.passed"
ROUND_FAILED = "flywheel.round.failed"
REVIEW_VIEW = "Flywheel review"
MODEL_TRAINED = "flywheel.model.trained"


def open_root(data_root: str | None) -> DataRoot:
    """The data root, with the s3 endpoint and credentials from settings (never from flow parameters)."""
    return open_data_root(data_root)


def open_label_studio() -> LabelStudioClient:
    """The Label Studio client. The token comes from a Prefect Secret block when settings name one, else
    from FLYWHEEL_LABEL_STUDIO_TOKEN; it never passes through flow parameters, logs or artifacts."""
    settings = get_settings()
    if settings.label_studio_token_secret:
        token = Secret.load(settings.label_studio_token_secret, _sync=True).get()
    else:
        token = settings.label_studio_token.get_secret_value()
    return LabelStudioClient(settings.label_studio_base_url, token)


def _artifact_key(*parts: str) -> str:
    return "-".join(parts).lower().replace("_", "-").replace(".", "-")


@task(**IO_RETRIES)
def crawl_source(data_root: str, params: CrawlParams, crawl_run: str) -> dict[str, Any]:
    """Crawl one source into raw/<crawl_run>/ (a Scrapy subprocess per call; staged under the work dir and
    uploaded when the data root is object storage).

    A retry of this task resumes the same crawl from its job folder instead of starting over.
    """
    root = open_root(data_root)
    report = crawl_to_root(
        root,
        params.start_url,
        crawl_run=crawl_run,
        source=params.source,
        work_dir=get_settings().work_dir,
        incremental=params.incremental,
        allowed_domains=params.allowed_domains,
        max_pages=params.max_pages,
        timeout_s=params.timeout_s,
        include=params.include,
        exclude=params.exclude,
        sitemap_urls=params.sitemap_urls,
        allowed_private_hosts=params.allowed_private_hosts,
        max_bytes=params.max_bytes,
    )
    report["output"] = f"raw/{crawl_run}"
    create_table_artifact(
        key=_artifact_key("crawl", params.source),
        table=report_table(report),
        description=f"crawl {crawl_run}: {report['pages']} pages, {report['images']} images, "
        f"{report.get('finish_reason')}",
    )
    return report


@task
def run_curation_stage(data_root: str, stage_name: str, cfg: Any, inputs: list[str]) -> dict[str, Any]:
    """Run a curation stage through the stage runner; a finished identical run is skipped."""
    root = open_root(data_root)
    if stage_name == "curate":  # deduplicated against everything kept before, through the dedup index
        report = run_incremental_curate(root, cfg, inputs)
    else:
        report = run_stage(root, STAGES[stage_name], cfg, inputs)
    publish_stage_report(report)
    return report


def publish_stage_report(report: dict[str, Any]) -> None:
    """A stage report as a table artifact: rows dropped per reason."""
    rows = [{"reason": reason, "rows": n} for reason, n in report["dropped_by_reason"].items()]
    scale = f", {report['shards']} shards" if report.get("shards", 1) > 1 else ""
    scale += f" x {report['partitions']} partitions" if report.get("partitions") else ""
    create_table_artifact(
        key=_artifact_key("stage", report["stage"]),
        table=rows or [{"reason": "-", "rows": 0}],
        description=f"{report['stage']}: {report['kept']} kept, {report['dropped']} dropped "
        f"(run {report['run_key']}{scale})",
    )


@task(cache_policy=NO_CACHE)
def run_curation_step(step: Callable[..., Any], args: tuple) -> Any:
    """One piece of one round of a sharded curation (a shard or a partition); see curation.shards."""
    return step(*args)


def map_on_task_runner(step: Callable[..., Any], args: list[tuple], stage: str = "curate") -> list[Any]:
    """The sharded runners' map: every piece a task (named `<stage>-<step>`) on the running flow's task
    runner, results in order."""
    named = run_curation_step.with_options(name=f"{stage}-{step.__name__.replace('_', '-')}")
    return [future.result() for future in named.map(unmapped(step), args)]


def make_task_runner(use_dask: bool) -> TaskRunner:
    """Dask at FLYWHEEL_DASK_ADDRESS if set; else a LocalCluster of FLYWHEEL_DASK_WORKERS processes when
    asked for (on 127.0.0.1, no dashboard, scratch under the work dir); else threads in this process."""
    settings = get_settings()
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    if use_dask:
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "host": "127.0.0.1",
                "dashboard_address": None,
                "local_directory": str(settings.work_dir / "dask"),
            },
        )
    return ThreadPoolTaskRunner(max_workers=settings.dask_workers)


def run_sharded_curation(
    data_root: str, cfg: Any, inputs: list[str], shards: int, partitions: int | None
) -> dict[str, Any]:
    """Sharded curate against the dedup index, its rounds mapped onto the flow's task runner; a report artifact."""
    report = run_sharded_curate(
        open_root(data_root), cfg, inputs, shards=shards, partitions=partitions, map_steps=map_on_task_runner
    )
    publish_stage_report(report)
    return report


def run_sharded_stage(data_root: str, stage_name: str, cfg: Any, inputs: list[str], shards: int) -> dict[str, Any]:
    """A row-wise stage (scrub) one task per shard on the flow's task runner; a report artifact."""
    map_steps = partial(map_on_task_runner, stage=stage_name)
    report = run_stage_sharded(open_root(data_root), STAGES[stage_name], cfg, inputs, shards, map_steps)
    publish_stage_report(report)
    return report


POOL_POINTER = "curated/LATEST_POOL.json"


@task
def remember_pool(data_root: str, pool: str) -> str:
    """Record `pool` as the latest label pool, so later commands need not name it."""
    open_root(data_root).write_json(POOL_POINTER, {"pool": pool, "at": datetime.now(UTC).isoformat()})
    return pool


def latest_pool(data_root: str) -> str:
    """The pool of the latest ingest; a clear error if nothing was ingested yet."""
    root = open_root(data_root)
    if not root.exists(POOL_POINTER):
        raise FileNotFoundError(f"no label pool under {root.url}: run `flywheel ingest` (or `flywheel curate`) first")
    return root.read_json(POOL_POINTER)["pool"]


def project_link(project_id: int) -> str:
    return open_label_studio().project_url(project_id)


@task(**IO_RETRIES)
def find_project(title: str) -> int:
    """The id of the Label Studio project called `title`; a clear error if there is none."""
    project_id = open_label_studio().find_project(title)
    if project_id is None:
        raise LookupError(f"no Label Studio project titled {title!r}: push a round first (`flywheel label push`)")
    return project_id


@task(**IO_RETRIES)
def open_project(data_root: str, title: str, labels: list[str], overlap_k: int, overlap_fraction: float) -> int:
    """Create (once) the image-classification project, set its overlap, attach the media folder: Local
    Files storage for a local root, an S3 storage over the same bucket for an s3:// root."""
    root = open_root(data_root)
    client = open_label_studio()
    project_id = client.ensure_project(title, build_label_config(labels))
    client.configure_overlap(project_id, overlap_k, overlap_fraction)
    attach_media(client, root, project_id, get_settings())
    return project_id


def read_gold(root: DataRoot, gold_path: str | None) -> dict[str, str]:
    """Gold answers (record_id -> label) from a JSON file under the data root; none without a path."""
    return dict(root.read_json(gold_path)) if gold_path else {}


def _newest_predictions(root: DataRoot, dataset: str) -> tuple[str | None, pa.Table | None]:
    model_version = latest_model(root, dataset)
    if model_version and root.exists(f"models/{model_version}/predictions.parquet"):
        return model_version, root.read_table(f"models/{model_version}/predictions.parquet", schema=None)
    return None, None


@task(**IO_RETRIES)
def choose_batch(data_root: str, pool: str, project_id: int, params: LabelRoundParams) -> tuple[RoundPlan, str | None]:
    """Plan the round: the pool minus what Label Studio already has, chosen by the newest model if any,
    with gold tasks mixed in."""
    root = open_root(data_root)
    records = root.read_table(pool)
    pushed = set(open_label_studio().task_ids_by_record(project_id))
    gold = read_gold(root, params.gold_path)
    model_version, predictions = _newest_predictions(root, params.dataset)
    plan = plan_round(
        records,
        pushed | set(gold),
        params.budget,
        strategy=params.strategy,
        predictions=predictions,
        seed=params.seed,
        min_per_class=params.min_per_class,
    )
    if gold and params.gold_per_round:
        plan = add_gold(plan, gold, params.gold_per_round, already_pushed=pushed, seed=params.seed)
    if not plan.uses_model:
        model_version = None
    get_run_logger().info(
        "round plan: %d of %d candidates by %s%s, %d gold",
        len(plan.record_ids),
        plan.candidates,
        plan.strategy,
        f" (model {model_version})" if model_version else "",
        len(plan.gold),
    )
    return plan, model_version


@task(**IO_RETRIES)
def push_batch(
    data_root: str, pool: str, project_id: int, plan: RoundPlan, labels: list[str], model_version: str | None
) -> dict[str, Any]:
    """Send the planned records as tasks, with the model's predictions as pre-annotations.

    Idempotent and resumable: a journal keyed by record_id means a retry after a Label Studio outage
    never imports a task twice.
    """
    root = open_root(data_root)
    client = open_label_studio()
    records = root.read_table(pool)
    batch = records.filter(pc.is_in(records.column("record_id"), pa.array(plan.record_ids, type=pa.string())))
    predictions = None
    if model_version:
        predictions = root.read_table(f"models/{model_version}/predictions.parquet", schema=None)
        predictions = predictions.filter(
            pc.is_in(predictions.column("record_id"), pa.array(plan.record_ids, type=pa.string()))
        )
    tasks = build_tasks(
        batch,
        export_media(root, batch),
        priorities=plan.priorities,
        predictions=predictions,
        labels=labels,
        model_version=model_version,
        media_url=partial(media_uri, root),
    )
    pushed = push_tasks(client, root, project_id, tasks)
    if model_version:
        client.set_model_version(project_id, model_version)
    task_ids = pushed["task_ids"]
    return {
        "tasks_pushed": pushed["pushed"],
        "already_present": pushed["already_present"],
        "predictions_pushed": sum(1 for t in tasks if t.get("predictions")) if pushed["pushed"] else 0,
        "task_ids": [task_ids[rid] for rid in plan.record_ids if rid in task_ids],
        "gold_task_ids": [task_ids[rid] for rid in plan.gold if rid in task_ids],
    }


@task(**IO_RETRIES)
def pull_labels(data_root: str, project_id: int) -> dict[str, Any]:
    """Append the annotations created or changed since the last pull to annotations/."""
    return pull_annotations(open_label_studio(), open_root(data_root), project_id)


@task(**IO_RETRIES)
def review_round(
    data_root: str,
    dataset: str,
    project_id: int,
    record_ids: list[str],
    gold_path: str | None,
    review_threshold: float,
) -> dict[str, Any]:
    """Quality control after a pull. Over this round's annotations: agreement (percent, kappas,
    Krippendorff's alpha, per pair) and annotator scorecards (an artifact). Over all annotations:
    Dawid-Skene labels, and the "Flywheel review" tab in Label Studio listing the tasks whose posterior
    is low, whose gold answer was missed, or that the newest model flags as likely mislabeled."""
    root = open_root(data_root)
    everything = read_annotations(root)
    this_round = everything.filter(pc.is_in(everything.column("record_id"), pa.array(record_ids, type=pa.string())))
    gold = read_gold(root, gold_path)
    aggregated = aggregate_dawid_skene(everything, gold=gold)
    doubtful = set(find_review_items(aggregated, threshold=review_threshold, gold=gold).column("record_id").to_pylist())
    model_version = latest_model(root, dataset)
    if model_version and root.exists(f"models/{model_version}/label_issues.parquet"):
        issues = root.read_table(f"models/{model_version}/label_issues.parquet", schema=None)
        doubtful |= set(issues.column("record_id").to_pylist())
    client = open_label_studio()
    task_ids = client.task_ids_by_record(project_id)
    review_ids = sorted(task_ids[rid] for rid in doubtful if rid in task_ids)
    client.ensure_view(project_id, REVIEW_VIEW, review_ids)
    scorecards = build_scorecards(this_round, aggregate_dawid_skene(this_round, gold=gold), gold).to_pylist()
    if scorecards:
        create_table_artifact(
            key="annotator-scorecards", table=scorecards, description="accuracy on gold, agreement with consensus"
        )
    labeled = aggregate_majority(this_round).column("record_id").to_pylist()
    return {
        "annotations": this_round.num_rows,
        "labeled_records": len(labeled),
        "new_labels": sum(1 for rid in labeled if rid not in gold),
        "agreement": compute_agreement(this_round),
        "pairwise": compute_pairwise_agreement(this_round).to_pylist(),
        "review": len(review_ids),
        "scorecards": scorecards,
    }


@task
def announce_round(
    data_root: str, dataset: str, pool: str, project_id: int, gold_path: str | None, gate: dict[str, Any]
) -> None:
    """Emit flywheel.round.passed when the round passed its quality gate (the release deployment's trigger
    maps its payload onto the release's parameters), flywheel.round.failed with the reasons when not."""
    values = {c["name"]: c["value"] for c in gate["criteria"]}
    payload = {
        "dataset": dataset,
        "data_root": open_root(data_root).url,
        "pool": pool,
        "project_id": project_id,
        "gold_path": gold_path,
        "values": values,
    }
    logger = get_run_logger()
    if gate["passed"]:
        logger.info("label round passed its quality gate %s: %s announced for %s", values, ROUND_PASSED, dataset)
    else:
        payload["reasons"] = gate["reasons"]
        logger.warning("label round FAILED its quality gate, no release: %s", "; ".join(gate["reasons"]))
    emit_event(
        event=ROUND_PASSED if gate["passed"] else ROUND_FAILED,
        resource={"prefect.resource.id": f"flywheel.dataset.{dataset}", "prefect.resource.name": dataset},
        payload=payload,
    )


def summarize_labels(data_root: str) -> dict[str, Any]:
    """Labels and agreement over every pulled annotation."""
    annotations = read_annotations(open_root(data_root))
    return {
        "annotations": annotations.num_rows,
        "labeled_records": aggregate_majority(annotations).num_rows,
        "agreement": compute_agreement(annotations),
    }


@task(**IO_RETRIES)
def publish_release(
    data_root: str, dataset: str, pool: str, cfg: ReleaseConfig, gold_path: str | None = None
) -> dict[str, Any]:
    """Build the next immutable release from labeled pool records (Dawid-Skene labels) and announce it."""
    root = open_root(data_root)
    annotations = read_annotations(root)
    labeled = attach_labels(root.read_table(pool), aggregate_dawid_skene(annotations, gold=read_gold(root, gold_path)))
    extra = {"agreement": compute_agreement(annotations), "pool": pool, "curation": trace_reports(root, pool)}
    manifest = build_release(root, dataset, labeled, cfg, extra=extra)
    manifest = {**manifest, "path": root.uri(f"releases/{dataset}/{manifest['version']}")}
    if not manifest.get("unchanged"):
        emit_event(
            event=DATASET_RELEASED,
            resource={"prefect.resource.id": f"flywheel.dataset.{dataset}", "prefect.resource.name": dataset},
            payload={"dataset": dataset, "version": manifest["version"], "data_root": root.url, "pool": pool},
        )
    create_markdown_artifact(
        key=_artifact_key("release", dataset),
        markdown=_release_markdown(manifest),
        description=f"release {dataset} {manifest['version']}",
    )
    return manifest


def _release_markdown(manifest: dict[str, Any]) -> str:
    counts = manifest.get("rows", {})
    diff = manifest.get("diff") or {}
    lines = [f"# {manifest['dataset']} {manifest['version']}", "", "| split | rows |", "|---|---|"]
    lines += [f"| {split} | {n} |" for split, n in counts.items()]
    lines += [
        "",
        f"parent: {manifest.get('parent')}; added {diff.get('added')}, removed {diff.get('removed')}, "
        f"relabelled {diff.get('relabelled')}",
        f"release id: `{manifest.get('release_id')}`",
        f"card: `{manifest['path']}/card.html`",
    ]
    return "\n".join(lines)


@task
def train_on_release(data_root: str, dataset: str, version: str, cfg: TrainConfig) -> dict[str, Any]:
    """Train a model on a verified release (GPU when present) and register it under models/."""
    metrics = train_model(open_root(data_root), dataset, version, cfg)
    create_table_artifact(
        key=_artifact_key("model", dataset),
        table=[{"label": label, "test_accuracy": acc} for label, acc in (metrics.get("per_class") or {}).items()],
        description=f"{metrics['model_version']}: test accuracy {metrics['test_accuracy']:.3f}",
    )
    return metrics


@task
def score_pool(data_root: str, model_version: str, pool: str) -> dict[str, Any]:
    """Write the model's predictions and embeddings over the pool for the next round, flag likely
    label errors (confident learning) and check the stopping signal against the previous model."""
    root = open_root(data_root)
    metrics = root.read_json(f"models/{model_version}/metrics.json")
    records = root.read_table(pool)
    predictions = predict_pool(root, model_version, records)
    labeled = attach_labels(records, aggregate_dawid_skene(read_annotations(root)))
    issues = None
    try:
        issues = flag_label_errors(labeled, predictions, metrics["labels"])
    except ValueError as reason:  # too few labels per class for out-of-sample probabilities yet
        get_run_logger().info("no label-error check for %s: %s", model_version, reason)
    if issues is not None:
        root.write_table(f"models/{model_version}/label_issues.parquet", issues)
    stopping = _check_stopping(root, metrics["dataset"], model_version, records, predictions)
    return {
        "scored": predictions.num_rows,
        "label_issues": issues.num_rows if issues is not None else 0,
        "label_issue_ids": issues.column("record_id").to_pylist() if issues is not None else [],
        "stopping": stopping,
    }


def _check_stopping(
    root: DataRoot, dataset: str, model_version: str, records: pa.Table, predictions: pa.Table
) -> dict[str, Any] | None:
    """Stabilising predictions on a fixed stop set (Bloodgood & Vijay-Shanker 2009); history under state/."""
    state_path = f"state/stopping/{dataset}.json"
    state = root.read_json(state_path) if root.exists(state_path) else None
    result = None
    if state and root.exists(f"models/{state['model_version']}/predictions.parquet"):
        previous = root.read_table(f"models/{state['model_version']}/predictions.parquet", schema=None)
        result = check_stopping(previous, predictions, state["stop_set"], state["history"])
        history = result["history"]
    else:
        history = []
    stop_set = state["stop_set"] if state else choose_stop_set(records, 200)
    root.write_json(state_path, {"model_version": model_version, "stop_set": stop_set, "history": history})
    return {k: v for k, v in result.items() if k != "stop_set"} if result else None


@task
def announce_model(data_root: str, metrics: dict[str, Any], scored: dict[str, Any]) -> None:
    """Emit flywheel.model.trained: the next label round picks this model up."""
    model_version = metrics["model_version"]
    emit_event(
        event=MODEL_TRAINED,
        resource={"prefect.resource.id": f"flywheel.model.{model_version}", "prefect.resource.name": model_version},
        related=[
            {
                "prefect.resource.id": f"flywheel.dataset.{metrics['dataset']}",
                "prefect.resource.role": "dataset",
            }
        ],
        payload={
            "model_version": model_version,
            "dataset": metrics["dataset"],
            "release": metrics.get("release"),
            "release_id": metrics.get("release_id"),
            "recipe": metrics.get("recipe"),
            "test_accuracy": metrics.get("test_accuracy"),
            "data_root": open_root(data_root).url,
            "scored": scored.get("scored", 0),
            "label_issues": scored.get("label_issues", 0),
            "stop_labeling": bool((scored.get("stopping") or {}).get("stop")),
        },
    )


@task(**IO_RETRIES)
def simulate_annotators(
    data_root: str,
    pool: str,
    project_id: int,
    task_ids: list[int],
    labels: list[str],
    sim: SimulationParams,
    overlap_fraction: float,
    overlap_k: int,
) -> dict[str, Any]:
    """Demo only: simulated annotators answer the round's tasks from the sample site's ground truth."""
    root = open_root(data_root)
    records = root.read_table(pool)
    url_of = dict(zip(records.column("record_id").to_pylist(), records.column("url").to_pylist(), strict=True))
    truth = json.loads(Path(sim.truth_path).read_text())["images"]

    def true_label(data: dict[str, Any]) -> str | None:
        url = url_of.get(data.get("record_id", ""))
        entry = truth.get(urlsplit(url).path) if url else None
        return entry["label"] if entry else None

    client = open_label_studio()
    wanted = set(task_ids)
    tasks = [t for t in client.list_tasks(project_id) if t["id"] in wanted]
    annotators = [
        SimulatedAnnotator(username=f"annotator{i + 1}", error_rate=rate) for i, rate in enumerate(sim.error_rates)
    ]
    return simulate_labeling(
        client,
        project_id,
        tasks,
        true_label,
        labels,
        annotators,
        overlap_fraction=overlap_fraction,
        overlap_k=overlap_k,
        seed=sim.seed,
    )


def new_run_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
