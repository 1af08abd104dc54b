"""Prefect flows: ingest (crawl, curate, scrub), label round, release and train, each one parameter model."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from corpus.settings import get_settings
from labeling.gate import check_quality_gate
from pipelines.config import CrawlParams, CurateParams, IngestParams, LabelRoundParams, ReleaseParams, TrainParams
from pipelines.tasks import (
    announce_model,
    announce_round,
    choose_batch,
    crawl_source,
    find_project,
    latest_pool,
    make_task_runner,
    new_run_name,
    open_project,
    project_link,
    publish_release,
    pull_labels,
    push_batch,
    remember_pool,
    review_round,
    run_curation_stage,
    run_sharded_curation,
    run_sharded_stage,
    score_pool,
    simulate_annotators,
    summarize_labels,
    train_on_release,
)


def _data_root(explicit: str | None) -> str:
    return explicit or get_settings().data_root


@flow(name="crawl", log_prints=True)
def crawl_flow(params: CrawlParams, data_root: str | None = None) -> dict[str, Any]:
    """Crawl one source into raw/<crawl run>/ and report pages, images and errors."""
    return crawl_source(_data_root(data_root), params, new_run_name("crawl"))


@flow(name="curate-shards", log_prints=True)
def curate_shards_flow(data_root: str, params: CurateParams) -> dict[str, Any]:
    """curate then scrub in shards: every piece of every round is a task on this flow's task runner (Dask or
    threads); curate's duplicate search runs in hash partitions between its per-shard rounds."""
    scale = params.scale
    curated = run_sharded_curation(data_root, params.curate, params.inputs, scale.shards, scale.partitions)
    scrubbed = run_sharded_stage(data_root, "scrub", params.scrub, [f"{curated['output']}/kept"], scale.shards)
    return {"curate": curated, "scrub": scrubbed}


@flow(name="curate", log_prints=True)
def curate_flow(params: CurateParams) -> dict[str, Any]:
    """Curate raw records (validation, exact and near-duplicates) and scrub what is kept (PII, EXIF, faces).

    The scrubbed kept records become the label pool (`pool`), remembered as the latest one.
    """
    data_root = _data_root(params.data_root)
    if params.scale.shards > 1 or params.scale.dask or get_settings().dask_address:
        sharded = curate_shards_flow.with_options(task_runner=make_task_runner(params.scale.dask))
        reports = sharded(data_root, params)
        curate_report, scrub_report = reports["curate"], reports["scrub"]
    else:
        curate_report = run_curation_stage(data_root, "curate", params.curate, params.inputs)
        scrub_report = run_curation_stage(data_root, "scrub", params.scrub, [f"{curate_report['output']}/kept"])
    pool = remember_pool(data_root, f"{scrub_report['output']}/kept")
    return {"curate": curate_report, "scrub": scrub_report, "pool": pool}


@flow(name="ingest", log_prints=True)
def ingest_flow(params: IngestParams) -> dict[str, Any]:
    """crawl -> curate -> scrub, as one scheduled unit."""
    crawl_report = crawl_flow(params.crawl, params.data_root)
    curated = curate_flow(
        CurateParams(
            inputs=[crawl_report["output"]],
            curate=params.curate,
            scrub=params.scrub,
            scale=params.scale,
            data_root=params.data_root,
        )
    )
    return {"crawl": crawl_report, **curated}


@flow(name="label-push", log_prints=True)
def label_push_flow(params: LabelRoundParams) -> dict[str, Any]:
    """Pick the next batch (diversity cold start, then the newest model's uncertainty) and push it to
    Label Studio with the model's predictions as pre-annotations. Rerunning pushes nothing twice."""
    data_root = _data_root(params.data_root)
    pool = params.pool or latest_pool(data_root)
    project_id = open_project(data_root, params.project_title, params.labels, params.overlap_k, params.overlap_fraction)
    plan, model_version = choose_batch(data_root, pool, project_id, params)
    pushed = push_batch(data_root, pool, project_id, plan, params.labels, model_version)
    return {
        "project_id": project_id,
        "project_url": project_link(project_id),
        "strategy": plan.strategy,
        "model_version": model_version,
        "candidates": plan.candidates,
        "record_ids": plan.record_ids,
        "gold": plan.gold,
        **pushed,
    }


@flow(name="label-pull", log_prints=True)
def label_pull_flow(project_title: str = "Flywheel demo", data_root: str | None = None) -> dict[str, Any]:
    """Pull new and changed annotations into annotations/ and report labels and agreement."""
    data_root = _data_root(data_root)
    project_id = find_project(project_title)
    pulled = pull_labels(data_root, project_id)
    return {"project_id": project_id, "pulled": pulled, **summarize_labels(data_root)}


@flow(name="label-round", log_prints=True)
def label_round_flow(params: LabelRoundParams) -> dict[str, Any]:
    """One label round: push a batch, optionally let simulated annotators answer, pull and aggregate."""
    data_root = _data_root(params.data_root)
    pushed = label_push_flow(params)
    pool = params.pool or latest_pool(data_root)
    simulated = None
    if params.simulate is not None:
        gold_tasks = set(pushed["gold_task_ids"])
        ordinary = [t for t in pushed["task_ids"] if t not in gold_tasks]
        everyone = len(params.simulate.error_rates)
        simulated = simulate_annotators(
            data_root,
            pool,
            pushed["project_id"],
            ordinary,
            params.labels,
            params.simulate,
            params.overlap_fraction,
            params.overlap_k,
        )
        if gold_tasks:  # every annotator meets the gold tasks, so each one's accuracy is measured
            simulate_annotators(
                data_root, pool, pushed["project_id"], sorted(gold_tasks), params.labels, params.simulate, 1.0, everyone
            )
    pulled = pull_labels(data_root, pushed["project_id"])
    round_labels = review_round(
        data_root, params.dataset, pushed["project_id"], pushed["record_ids"], params.gold_path, params.review_threshold
    )
    gate = check_quality_gate(
        agreement=round_labels["agreement"],
        scorecards=round_labels["scorecards"],
        new_labels=round_labels["new_labels"],
        gate=params.gate,
    ).to_dict()
    announce_round(data_root, params.dataset, pool, pushed["project_id"], params.gold_path, gate)
    report = {
        "project_id": pushed["project_id"],
        "project_url": pushed["project_url"],
        "strategy": pushed["strategy"],
        "model_version": pushed["model_version"],
        "candidates": pushed["candidates"],
        "tasks_pushed": pushed["tasks_pushed"],
        "predictions_pushed": pushed["predictions_pushed"],
        "simulated": simulated,
        "pulled": pulled,
        "annotations": round_labels["annotations"],
        "labeled_records": round_labels["labeled_records"],
        "agreement": round_labels["agreement"],
        "gold": pushed["gold"],
        "review": round_labels["review"],
        "scorecards": round_labels["scorecards"],
        "new_labels": round_labels["new_labels"],
        "quality_gate": gate,
    }
    verdict = "passed: flywheel.round.passed emitted" if gate["passed"] else "FAILED: flywheel.round.failed, no release"
    create_markdown_artifact(
        key="label-round",
        markdown="\n".join(
            ["# Label round", "", f"Label Studio project: {pushed['project_url']}", "", "| what | value |", "|---|---|"]
            + [f"| {k} | {v} |" for k, v in report.items() if not isinstance(v, dict | list)]
            + ["", f"## Quality gate: {verdict}", "", "| criterion | value | threshold | ok |", "|---|---|---|---|"]
            + [f"| {c['name']} | {c['value']} | {c['threshold']} | {c['ok']} |" for c in gate["criteria"]]
            + [f"- {reason}" for reason in gate["reasons"]]
        ),
        description=f"project {pushed['project_id']}: {pushed['tasks_pushed']} tasks by {pushed['strategy']}; "
        f"quality gate {'passed' if gate['passed'] else 'failed'}",
    )
    return report


@flow(name="release", log_prints=True)
def release_flow(params: ReleaseParams) -> dict[str, Any]:
    """Publish the next immutable release of the dataset; emits flywheel.dataset.released."""
    data_root = _data_root(params.data_root)
    pool = params.pool or latest_pool(data_root)
    return publish_release(data_root, params.dataset, pool, params.release, params.gold_path)


@flow(name="train", log_prints=True)
def train_flow(params: TrainParams) -> dict[str, Any]:
    """Train on a release, score the unlabeled pool for the next round and emit flywheel.model.trained."""
    data_root = _data_root(params.data_root)
    metrics = train_on_release(data_root, params.dataset, params.version, params.train)
    scored = score_pool(data_root, metrics["model_version"], params.pool) if params.pool else {}
    announce_model(data_root, metrics, scored)
    return {
        **metrics,
        "scored": scored.get("scored", 0),
        "label_issues": scored.get("label_issues", 0),
        "stopping": scored.get("stopping"),
    }


@flow(name="train-on-release", log_prints=True)
def train_on_release_flow(dataset: str, version: str, data_root: str | None = None, pool: str | None = None) -> dict:
    """The event-triggered entry point: the `flywheel.dataset.released` payload maps onto these parameters."""
    return train_flow(TrainParams(dataset=dataset, version=version, data_root=data_root, pool=pool))
