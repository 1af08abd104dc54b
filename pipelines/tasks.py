"""Prefect tasks: thin wrappers that do the I/O around the packages' pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.system import Secret
from prefect.events import emit_event

from corpus.releases import ReleaseConfig, build_release
from corpus.settings import get_settings
from corpus.stages import Stage, run_stage
from corpus.store import DataRoot
from crawlers.report import report_table
from crawlers.run import crawl
from curation.cleaning import CURATE
from curation.privacy import SCRUB
from labeling.annotators import SimulatedAnnotator, simulate_labeling
from labeling.client import LabelStudioClient
from labeling.quality import aggregate_majority, compute_agreement
from labeling.rounds import RoundPlan, attach_labels, plan_round
from labeling.sync import pull_annotations, read_annotations
from labeling.tasks import build_label_config, build_predictions, build_tasks, export_media
from pipelines.config import CrawlParams, SimulationParams
from training.predict import predict_pool
from training.registry import latest_model
from training.train import TrainConfig, train_model

STAGES: dict[str, Stage] = {"curate": CURATE, "scrub": SCRUB}
IO_RETRIES = {"retries": 3, "retry_delay_seconds": [2, 10, 30]}

DATASET_RELEASED = "flywheel.dataset.released"
MODEL_TRAINED = "flywheel.model.trained"


def open_root(data_root: str | None) -> DataRoot:
    return DataRoot(data_root or get_settings().data_root)


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
    """Crawl one source into raw/<crawl_run>/ (a Scrapy subprocess per call).

    A retry of this task resumes the same crawl from its job folder instead of starting over.
    """
    root = open_root(data_root)
    report = crawl(
        params.start_url,
        Path(root.local_path(f"raw/{crawl_run}")),
        crawl_run=crawl_run,
        source=params.source,
        allowed_domains=params.allowed_domains,
        max_pages=params.max_pages,
        timeout_s=params.timeout_s,
        jobdir=Path(root.local_path(f"state/crawl/jobs/{crawl_run}")),
        state_path=Path(root.local_path(f"state/crawl/{params.source}.sqlite")) if params.incremental else None,
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
    report = run_stage(open_root(data_root), STAGES[stage_name], cfg, inputs)
    rows = [{"reason": reason, "rows": n} for reason, n in report["dropped_by_reason"].items()]
    create_table_artifact(
        key=_artifact_key("stage", stage_name),
        table=rows or [{"reason": "-", "rows": 0}],
        description=f"{stage_name}: {report['kept']} kept, {report['dropped']} dropped (run {report['run_key']})",
    )
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
def open_project(data_root: str, title: str, labels: list[str]) -> int:
    """Create (once) the image-classification project and attach the media folder as local storage."""
    root = open_root(data_root)
    client = open_label_studio()
    project_id = client.ensure_project(title, build_label_config(labels))
    media = Path(root.local_path("media"))
    media.mkdir(parents=True, exist_ok=True)
    client.ensure_local_storage(project_id, str(media))
    return project_id


@task(**IO_RETRIES)
def choose_batch(
    data_root: str, dataset: str, pool: str, project_id: int, budget: int, strategy: str, seed: int
) -> tuple[RoundPlan, str | None]:
    """Plan the round: the pool minus what Label Studio already has, chosen by the newest model if any."""
    root = open_root(data_root)
    records = root.read_table(pool)
    pushed = set(open_label_studio().task_ids_by_record(project_id))
    model_version = latest_model(root, dataset)
    predictions = None
    if model_version and root.exists(f"models/{model_version}/predictions.parquet"):
        predictions = root.read_table(f"models/{model_version}/predictions.parquet", schema=None)
    plan = plan_round(records, pushed, budget, strategy=strategy, predictions=predictions, seed=seed)
    if plan.strategy != "uncertainty":
        model_version = None
    get_run_logger().info(
        "round plan: %d of %d candidates by %s%s",
        len(plan.record_ids),
        plan.candidates,
        plan.strategy,
        f" (model {model_version})" if model_version else "",
    )
    return plan, model_version


@task(**IO_RETRIES)
def push_batch(
    data_root: str, pool: str, project_id: int, plan: RoundPlan, labels: list[str], model_version: str | None
) -> dict[str, Any]:
    """Send the planned records as tasks (and the model's predictions as pre-annotations); idempotent."""
    root = open_root(data_root)
    client = open_label_studio()
    records = root.read_table(pool)
    existing = client.task_ids_by_record(project_id)
    wanted = [rid for rid in plan.record_ids if rid not in existing]
    batch = records.filter(pc.is_in(records.column("record_id"), pa.array(wanted, type=pa.string())))
    media = export_media(root, batch)
    new_ids = client.import_tasks(project_id, build_tasks(batch, media, priorities=plan.priorities)) if wanted else []
    task_ids = client.task_ids_by_record(project_id)
    predictions_pushed = 0
    if model_version and wanted:
        predictions = root.read_table(f"models/{model_version}/predictions.parquet", schema=None)
        predictions = predictions.filter(pc.is_in(predictions.column("record_id"), pa.array(wanted, type=pa.string())))
        payload = build_predictions({rid: task_ids[rid] for rid in wanted}, predictions, labels, model_version)
        predictions_pushed = client.import_predictions(project_id, payload)
        client.set_model_version(project_id, model_version)
    return {
        "tasks_pushed": len(new_ids),
        "already_present": len(plan.record_ids) - len(wanted),
        "predictions_pushed": predictions_pushed,
        "task_ids": [task_ids[rid] for rid in plan.record_ids if rid in task_ids],
    }


@task(**IO_RETRIES)
def pull_labels(data_root: str, project_id: int) -> dict[str, Any]:
    """Append the annotations created or changed since the last pull to annotations/."""
    return pull_annotations(open_label_studio(), open_root(data_root), project_id)


@task
def summarize_labels(data_root: str, record_ids: list[str] | None = None) -> dict[str, Any]:
    """Majority labels and agreement over all pulled annotations (or those of `record_ids`)."""
    annotations = read_annotations(open_root(data_root))
    if record_ids is not None:
        annotations = annotations.filter(
            pc.is_in(annotations.column("record_id"), pa.array(record_ids, type=pa.string()))
        )
    aggregated = aggregate_majority(annotations)
    return {
        "annotations": annotations.num_rows,
        "labeled_records": aggregated.num_rows,
        "agreement": compute_agreement(annotations),
    }


@task(**IO_RETRIES)
def publish_release(data_root: str, dataset: str, pool: str, cfg: ReleaseConfig) -> dict[str, Any]:
    """Build the next immutable release from labeled pool records and announce it with an event."""
    root = open_root(data_root)
    annotations = read_annotations(root)
    labeled = attach_labels(root.read_table(pool), aggregate_majority(annotations))
    extra = {"agreement": compute_agreement(annotations), "pool": pool, "curation": stage_reports(root, pool)}
    manifest = build_release(root, dataset, labeled, cfg, extra=extra)
    manifest = {**manifest, "path": root.path("releases", dataset, manifest["version"])}
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


def stage_reports(root: DataRoot, pool: str) -> list[dict[str, Any]]:
    """The reports of the stages that made `pool`, newest first, followed through each stage's inputs."""
    reports, folder = [], pool.removesuffix("/kept")
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
def score_pool(data_root: str, model_version: str, pool: str) -> int:
    """Write the model's predictions and embeddings over the pool, for the next label round."""
    root = open_root(data_root)
    return predict_pool(root, model_version, root.read_table(pool)).num_rows


@task
def announce_model(data_root: str, metrics: dict[str, Any], scored: int) -> None:
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
            "scored": scored,
        },
    )


@task(**IO_RETRIES)
def simulate_annotators(
    data_root: str, pool: str, project_id: int, task_ids: list[int], labels: list[str], sim: SimulationParams
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
        overlap_fraction=sim.overlap_fraction,
        overlap_k=sim.overlap_k,
        seed=sim.seed,
    )


def new_run_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
