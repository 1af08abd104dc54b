"""Label-round flows: push a model-chosen batch to Label Studio, pull annotations, review them, check the gate."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from corpus.pool import latest_pool, read_gold, select_records
from corpus.settings import get_settings
from labeling.gate import check_quality_gate
from labeling.quality import aggregate_dawid_skene
from labeling.review import build_review_set
from labeling.rounds import RoundPlan, plan_next_batch
from labeling.summary import summarize_annotations, summarize_round
from labeling.sync import pull_annotations, push_tasks, read_annotations
from labeling.tasks import attach_media, build_label_config, build_tasks, export_media, media_uri
from pipelines.config import LabelRoundParams
from pipelines.runtime import (
    ROUND_FAILED,
    ROUND_PASSED,
    announce,
    data_root_url,
    open_label_studio,
    open_root,
    task,
)
from training.registry import newest_predictions, read_label_issues

REVIEW_VIEW = "Flywheel review"


@dataclass
class RoundInputs:
    """What every step of a round reads, read once: where the pool is, its records, the gold answers, and
    the Label Studio project."""

    data_root: str
    pool: str
    records: pa.Table
    gold: dict[str, str]
    project_id: int


@task
def open_round(params: LabelRoundParams) -> RoundInputs:
    """Read the pool and the gold file; create (once) the project, set its overlap, attach the media folder
    (Local Files storage for a local root, an S3 storage over the same bucket for an s3:// root)."""
    data_root = data_root_url(params.data_root)
    root = open_root(data_root)
    pool = params.pool or latest_pool(root)
    client = open_label_studio()
    project_id = client.ensure_project(params.project_title, build_label_config(params.labels))
    client.configure_overlap(project_id, params.overlap_k, params.overlap_fraction)
    attach_media(client, root, project_id, get_settings())
    return RoundInputs(data_root, pool, root.read_table(pool), read_gold(root, params.gold_path), project_id)


@task
def choose_batch(params: LabelRoundParams, inputs: RoundInputs) -> RoundPlan:
    """Plan the round: the pool minus what Label Studio already has, chosen by the newest model if any,
    with gold tasks mixed in."""
    pushed = set(open_label_studio().task_ids_by_record(inputs.project_id))
    model_version, predictions = newest_predictions(open_root(inputs.data_root), params.dataset)
    plan = plan_next_batch(
        inputs.records,
        pushed,
        inputs.gold,
        budget=params.budget,
        gold_per_round=params.gold_per_round,
        strategy=params.strategy,
        predictions=predictions,
        model_version=model_version,
        seed=params.seed,
        min_per_class=params.min_per_class,
    )
    get_run_logger().info(
        "round plan: %d of %d candidates by %s%s, %d gold",
        len(plan.record_ids),
        plan.candidates,
        plan.strategy,
        f" (model {plan.model_version})" if plan.model_version else "",
        len(plan.gold),
    )
    return plan


@task
def push_batch(params: LabelRoundParams, inputs: RoundInputs, plan: RoundPlan) -> dict[str, Any]:
    """Send the planned records as tasks, with the model's predictions as pre-annotations. Idempotent and
    resumable: a journal keyed by record_id means a retry after an outage never imports a task twice."""
    root = open_root(inputs.data_root)
    client = open_label_studio()
    batch = select_records(inputs.records, plan.record_ids)
    predictions = None
    if plan.model_version:
        _, everything = newest_predictions(root, params.dataset)
        predictions = select_records(everything, plan.record_ids) if everything is not None else None
    tasks = build_tasks(
        batch,
        export_media(root, batch),
        priorities=plan.priorities,
        predictions=predictions,
        labels=params.labels,
        model_version=plan.model_version,
        media_url=partial(media_uri, root),
    )
    pushed = push_tasks(client, root, inputs.project_id, tasks)
    if plan.model_version:
        client.set_model_version(inputs.project_id, plan.model_version)
    task_ids = pushed["task_ids"]
    return {
        "tasks_pushed": pushed["pushed"],
        "already_present": pushed["already_present"],
        "predictions_pushed": sum(1 for t in tasks if t.get("predictions")) if pushed["pushed"] else 0,
        "task_ids": [task_ids[rid] for rid in plan.record_ids if rid in task_ids],
        "gold_task_ids": [task_ids[rid] for rid in plan.gold if rid in task_ids],
    }


@task
def pull_labels(data_root: str, project_id: int) -> dict[str, Any]:
    """Append the annotations created or changed since the last pull to annotations/."""
    return pull_annotations(open_label_studio(), open_root(data_root), project_id)


@task
def review_round(params: LabelRoundParams, inputs: RoundInputs, record_ids: list[str]) -> dict[str, Any]:
    """Quality control after a pull: the round's summary (agreement, scorecards as an artifact) and the
    "Flywheel review" tab in Label Studio with every doubtful, gold-missed or likely mislabeled task."""
    root = open_root(inputs.data_root)
    everything = read_annotations(root)
    summary = summarize_round(everything, record_ids, inputs.gold)
    model_version, _ = newest_predictions(root, params.dataset)
    issues = read_label_issues(root, model_version) if model_version else None
    review = build_review_set(
        aggregate_dawid_skene(everything, gold=inputs.gold),
        threshold=params.review_threshold,
        gold=inputs.gold,
        flagged=issues.column("record_id").to_pylist() if issues is not None else (),
    )
    client = open_label_studio()
    task_ids = client.task_ids_by_record(inputs.project_id)
    review_ids = sorted(task_ids[rid] for rid in review.column("record_id").to_pylist() if rid in task_ids)
    client.ensure_view(inputs.project_id, REVIEW_VIEW, review_ids)
    if summary["scorecards"]:
        create_table_artifact(
            key="annotator-scorecards",
            table=summary["scorecards"],
            description="accuracy on gold, agreement with consensus",
        )
    return {**summary, "review": len(review_ids)}


@task
def announce_round(params: LabelRoundParams, pool: str, project_id: int, gate: dict[str, Any]) -> None:
    """Emit flywheel.round.passed when the round passed its quality gate (the release deployment's trigger
    maps its payload onto the release's parameters), flywheel.round.failed with the reasons when not."""
    values = {c["name"]: c["value"] for c in gate["criteria"]}
    payload: dict[str, Any] = {
        "dataset": params.dataset,
        "data_root": open_root(data_root_url(params.data_root)).url,
        "pool": pool,
        "project_id": project_id,
        "gold_path": params.gold_path,
        "values": values,
    }
    logger = get_run_logger()
    if gate["passed"]:
        logger.info("label round passed its quality gate %s: %s for %s", values, ROUND_PASSED, params.dataset)
    else:
        payload["reasons"] = gate["reasons"]
        logger.warning("label round FAILED its quality gate, no release: %s", "; ".join(gate["reasons"]))
    announce(ROUND_PASSED if gate["passed"] else ROUND_FAILED, params.dataset, payload)


def round_markdown(report: dict[str, Any], gate: dict[str, Any]) -> str:
    """The label round's artifact: its figures and the quality gate, criterion by criterion."""
    verdict = "passed: flywheel.round.passed emitted" if gate["passed"] else "FAILED: flywheel.round.failed, no release"
    return "\n".join(
        ["# Label round", "", f"Label Studio project: {report['project_url']}", "", "| what | value |", "|---|---|"]
        + [f"| {k} | {v} |" for k, v in report.items() if not isinstance(v, dict | list)]
        + ["", f"## Quality gate: {verdict}", "", "| criterion | value | threshold | ok |", "|---|---|---|---|"]
        + [f"| {c['name']} | {c['value']} | {c['threshold']} | {c['ok']} |" for c in gate["criteria"]]
        + [f"- {reason}" for reason in gate["reasons"]]
    )


@flow(name="label-push", log_prints=True)
def label_push_flow(params: LabelRoundParams) -> dict[str, Any]:
    """Pick the next batch (diversity cold start, then the newest model's uncertainty) and push it to
    Label Studio with the model's predictions as pre-annotations. Rerunning pushes nothing twice."""
    inputs = open_round(params)
    plan = choose_batch(params, inputs)
    pushed = push_batch(params, inputs, plan)
    return {
        "project_id": inputs.project_id,
        "project_url": open_label_studio().project_url(inputs.project_id),
        "pool": inputs.pool,
        "strategy": plan.strategy,
        "model_version": plan.model_version,
        "candidates": plan.candidates,
        "record_ids": plan.record_ids,
        "gold": plan.gold,
        **pushed,
    }


@flow(name="label-pull", log_prints=True)
def label_pull_flow(project_title: str = "Flywheel demo", data_root: str | None = None) -> dict[str, Any]:
    """Pull new and changed annotations into annotations/ and report labels and agreement."""
    data_root = data_root_url(data_root)
    project_id = open_label_studio().find_project(project_title)
    if project_id is None:
        raise LookupError(
            f"no Label Studio project titled {project_title!r}: push a round first (`flywheel label push`)"
        )
    pulled = pull_labels(data_root, project_id)
    return {"project_id": project_id, "pulled": pulled, **summarize_annotations(read_annotations(open_root(data_root)))}


@flow(name="label-review", log_prints=True)
def label_review_flow(params: LabelRoundParams, pushed: dict[str, Any]) -> dict[str, Any]:
    """Close a pushed round: pull, aggregate and review its annotations, check its quality gate and announce
    the verdict (flywheel.round.passed / .failed). `pushed` is label_push_flow's result."""
    inputs = open_round(params.model_copy(update={"pool": pushed["pool"]}))
    pulled = pull_labels(inputs.data_root, inputs.project_id)
    reviewed = review_round(params, inputs, pushed["record_ids"])
    gate = check_quality_gate(
        agreement=reviewed["agreement"],
        scorecards=reviewed["scorecards"],
        new_labels=reviewed["new_labels"],
        gate=params.gate,
    ).to_dict()
    announce_round(params, inputs.pool, inputs.project_id, gate)
    report = {
        **{k: pushed[k] for k in ("project_id", "project_url", "strategy", "model_version", "candidates")},
        **{k: pushed[k] for k in ("tasks_pushed", "predictions_pushed", "gold")},
        "pulled": pulled,
        **{k: reviewed[k] for k in ("annotations", "labeled_records", "agreement", "review", "scorecards")},
        "new_labels": reviewed["new_labels"],
        "quality_gate": gate,
    }
    create_markdown_artifact(
        key="label-round",
        markdown=round_markdown(report, gate),
        description=f"project {inputs.project_id}: {pushed['tasks_pushed']} tasks by {pushed['strategy']}; "
        f"quality gate {'passed' if gate['passed'] else 'failed'}",
    )
    return report


@flow(name="label-round", log_prints=True)
def label_round_flow(params: LabelRoundParams) -> dict[str, Any]:
    """One label round: push a batch, then pull, review and gate whatever annotators have done."""
    return label_review_flow(params, label_push_flow(params))
