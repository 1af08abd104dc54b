"""Watching and closing label rounds: progress from Label Studio, the completion event, review, gate and verdict."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from corpus.pool import read_gold
from labeling.gate import QualityGate, check_quality_gate
from labeling.multilabel import aggregate_multilabel
from labeling.multilabel_quality import build_label_review_set
from labeling.quality import aggregate_dawid_skene
from labeling.review import build_review_set
from labeling.round_state import (
    COMPLETE,
    MANUAL,
    LabelRound,
    due_to_close,
    finish_round,
    judge_share_done,
    measure_progress,
    start_closing,
    with_progress,
)
from labeling.round_store import list_datasets, load_open_round, release_claim, round_path, save_round
from labeling.summary import summarize_label_set_round, summarize_round
from labeling.sync import read_annotations
from labeling.views import REVIEW_VIEW, review_hidden_columns, review_task_fields
from pipelines.detect import judge_boxes, review_boxes
from pipelines.round_markdown import progress_markdown, verdict_markdown
from pipelines.rounds import pull_labels, round_payload, round_resource
from pipelines.runtime import (
    ROUND_COMPLETE,
    ROUND_FAILED,
    ROUND_PASSED,
    ROUND_PROGRESS,
    announce,
    artifact_key,
    data_root_url,
    open_label_studio,
    open_root,
    task,
)
from training.registry import newest_predictions, read_label_issues


def _now() -> datetime:
    return datetime.now(UTC)


def pull_and_measure(data_root: str, round_: LabelRound) -> dict[str, Any]:
    """Pull the round's project, then how far the round is (labeling.round_state.measure_progress)."""
    pull_labels(data_root, round_.project_id, round_.task)
    return measure_progress(round_, read_annotations(open_root(data_root)), _now())


@task
def measure_round(data_root: str, round_: LabelRound) -> LabelRound:
    """Pull the round's project and store how far the round is; its progress artifact is updated."""
    progress = pull_and_measure(data_root, round_)
    measured = with_progress(round_, {**round_.progress, **progress}, _now())
    save_round(open_root(data_root), measured)
    create_markdown_artifact(
        key=artifact_key("round", round_.dataset), markdown=progress_markdown(measured), description=measured.id
    )
    return measured


@task
def announce_progress(data_root: str, round_: LabelRound) -> str | None:
    """Emit flywheel.round.progress; and flywheel.round.complete when the batch is done or its deadline has
    passed (an automation closes the round on it). Returns why the round is due to close, or None."""
    root_url = open_root(data_root).url
    payload = {**round_payload(round_, root_url), **{k: round_.progress.get(k) for k in ("done", "needed")}}
    announce(ROUND_PROGRESS, round_.dataset, payload, resource=round_resource(round_))
    due = due_to_close(round_, round_.progress, _now())
    if due:
        get_run_logger().info("%s is due to close: %s", round_.id, due)
        announce(ROUND_COMPLETE, round_.dataset, {**payload, "reason": due}, resource=round_resource(round_))
    return due


@flow(name="label-check", log_prints=True)
def label_check_flow(dataset: str | None = None, data_root: str | None = None) -> list[dict[str, Any]]:
    """Check every open round (or `dataset`'s): pull, measure progress, and announce the rounds due to close.
    Run by Label Studio's webhooks (through `flywheel label listen`) and on a schedule for missed ones."""
    data_root = data_root_url(data_root)
    root = open_root(data_root)
    checked = []
    for name in [dataset] if dataset else list_datasets(root):
        round_ = load_open_round(root, name)
        if round_ is None or round_.status != "labeling":
            continue
        measured = measure_round(data_root, round_)
        due = announce_progress(data_root, measured)
        checked.append({"round": measured.id, **{k: measured.progress.get(k) for k in ("done", "needed")}, "due": due})
    return checked


@task
def review_round(data_root: str, round_: LabelRound) -> dict[str, Any]:
    """The round's summary (agreement, scorecards by name) and the review tab: every doubtful, gold-missed or
    likely mislabeled task with its reasons and the aggregated label and confidence in its columns."""
    root = open_root(data_root)
    if round_.task == "detect":
        summary, review = review_boxes(root, round_)
    else:
        summary, review = _review_labels(root, round_)
    client = open_label_studio()
    task_ids = client.task_ids_by_record(round_.project_id)
    fields = review_task_fields(review)
    for record_id, values in fields.items():
        if record_id in task_ids:
            client.update_task_data(task_ids[record_id], values)
    review_ids = sorted(task_ids[rid] for rid in fields if rid in task_ids)
    client.ensure_view(round_.project_id, REVIEW_VIEW, review_ids, hidden_columns=review_hidden_columns())
    return {**summary, "review": len(review_ids)}


def _review_labels(root: Any, round_: LabelRound) -> tuple[dict[str, Any], Any]:
    """A classify or multilabel round's summary and review set (Dawid-Skene consensus, per label for multilabel;
    gold; the model's label issues)."""
    params = round_.params
    gold = read_gold(root, params.get("gold_path"))
    everything = read_annotations(root)
    model_version, _ = newest_predictions(root, round_.dataset)
    issues = read_label_issues(root, model_version) if model_version else None
    if round_.task == "multilabel":  # per-label aggregation, agreement, gold F1 and review (labeling.multilabel)
        summary = summarize_label_set_round(everything, round_.record_ids, gold, round_.labels)
        default = params.get("review_threshold", 0.8)
        review = build_label_review_set(
            aggregate_multilabel(everything, labels=round_.labels, gold=gold),
            threshold={label: default for label in round_.labels} | (params.get("review_thresholds") or {}),
            gold=gold,
            flagged=issues if issues is not None and "label" in issues.column_names else None,
        )
        return summary, review
    summary = summarize_round(everything, round_.record_ids, gold)
    review = build_review_set(
        aggregate_dawid_skene(everything, gold=gold),
        threshold=params.get("review_threshold", 0.8),
        gold=gold,
        flagged=issues.column("record_id").to_pylist() if issues is not None else (),
    )
    return summary, review


def judge_round(round_: LabelRound, summary: dict[str, Any]) -> dict[str, Any]:
    """The round's verdict: its quality gate (a detect round's on boxes), plus the share-done rule when it
    closed unfinished."""
    gate = (
        judge_boxes(round_, summary)
        if round_.task == "detect"
        else check_quality_gate(
            agreement=summary["agreement"],
            scorecards=summary["scorecards"],
            new_labels=summary["new_labels"],
            gate=QualityGate.model_validate(round_.params.get("gate") or {}),
        ).to_dict()
    )
    if round_.close_reason == COMPLETE:
        return gate
    share = (round_.progress or {}).get("share_done") or 0.0
    return judge_share_done(gate, share, round_.params.get("min_share_done", 0.8))


@task
def close_round(data_root: str, round_: LabelRound, reason: str) -> LabelRound:
    """Close the round: pull once more, review, judge, store the verdict, end the open-round claim, and
    announce flywheel.round.passed (the release deployment's trigger) or flywheel.round.failed."""
    root = open_root(data_root)
    closing = round_ if round_.status == "closing" else start_closing(round_, reason, _now())
    claim = f"{round_path(closing.dataset, closing.number)}.closing"
    root.create_exclusive(claim, f"{reason} {_now().isoformat()} {uuid.uuid4().hex}".encode())
    save_round(root, closing)
    progress = pull_and_measure(data_root, closing)
    closing.progress = {**closing.progress, **progress}
    summary = review_round(data_root, closing)
    closed = finish_round(closing, judge_round(closing, summary), summary, _now())
    save_round(root, closed)
    release_claim(root, closed.dataset, closed.number)
    verdict = closed.verdict
    payload = {**round_payload(closed, root.url), "gold_path": closed.params.get("gold_path")}
    payload["values"] = {c["name"]: c["value"] for c in verdict["criteria"]}
    if verdict["passed"]:
        get_run_logger().info("%s passed its quality gate: %s", closed.id, payload["values"])
    else:
        payload["reasons"] = verdict["reasons"]
        get_run_logger().warning("%s FAILED its quality gate, no release: %s", closed.id, "; ".join(verdict["reasons"]))
    announce(ROUND_PASSED if verdict["passed"] else ROUND_FAILED, closed.dataset, payload)
    create_markdown_artifact(
        key=artifact_key("round", closed.dataset), markdown=verdict_markdown(closed), description=closed.id
    )
    return closed


@flow(name="label-close", log_prints=True)
def label_close_flow(dataset: str = "demo", reason: str = MANUAL, data_root: str | None = None) -> dict[str, Any]:
    """Close the dataset's open round now (`reason`: complete, deadline or manual) and judge it. A round is
    closed once: of two closes at the same moment one does the work and the other finds it closing."""
    data_root = data_root_url(data_root)
    root = open_root(data_root)
    round_ = load_open_round(root, dataset)
    if round_ is None or root.exists(f"{round_path(dataset, round_.number)}.closing"):
        if reason == MANUAL:
            raise LookupError(f"dataset {dataset!r} has no open round to close")
        # An automation's second completion event: the round is closed (or being closed) already.
        return {"round": None, "closed": False, "reason": "no open round"}
    try:
        closed = close_round(data_root, round_, reason)
    except FileExistsError:
        return {"round": round_.id, "closed": False, "reason": "another close of this round is running"}
    return {
        "closed": True,
        "round": closed.id,
        "close_reason": closed.close_reason,
        "passed": closed.verdict["passed"],
        "reasons": closed.verdict["reasons"],
        "verdict": closed.verdict,
        "summary": closed.summary,
        "progress": {k: v for k, v in closed.progress.items() if k != "priorities"},
    }
