"""Label-round flows: open a round (a model-chosen batch in Label Studio), watch its progress, close and judge it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from corpus.pool import latest_pool, read_box_gold, read_gold, select_records
from corpus.settings import get_settings
from corpus.store import DataRoot
from corpus.tasks import RECORD_KIND
from corpus.text_features import text_embedding_table
from crawlers.importers.config import ImportLabelPolicy
from crawlers.importers.labels import origins_with_policy
from labeling.label_config import build_box_label_config, build_instructions, build_label_config
from labeling.multilabel_quality import as_selection_predictions, attach_label_set_predictions
from labeling.preannotations import merge_preannotations, preannotation_version, read_imported_predictions
from labeling.queue import overlaps_to_set, plan_task_overlaps
from labeling.round_state import LabelRound, open_round, start_labeling
from labeling.round_store import (
    RoundOpenError,
    claim_round,
    list_round_numbers,
    load_open_round,
    load_round,
    open_round_number,
    save_round,
)
from labeling.rounds import RoundPlan, plan_next_batch
from labeling.studio_tasks import attach_media, build_tasks, export_media, media_uri
from labeling.summary import summarize_annotations
from labeling.sync import pull_annotations, push_tasks, read_annotations
from labeling.text_tasks import build_text_label_config, build_text_tasks
from labeling.views import round_hidden_columns, round_view_title
from pipelines.config import LabelRoundParams
from pipelines.round_markdown import progress_markdown
from pipelines.runtime import ROUND_OPENED, announce, artifact_key, data_root_url, open_label_studio, open_root, task
from training.encoders import newest_embeddings
from training.registry import newest_predictions, read_metadata

CHECK_DEPLOYMENT = "label-check/label-check"  # deploy/prefect.yaml: flow label-check, deployment label-check


@dataclasses.dataclass
class RoundInputs:
    """What every step of opening a round reads, read once: the pool, its records, the gold answers, the project."""

    data_root: str
    pool: str
    records: Any
    gold: dict[str, Any]  # record_id -> known label (a detect round's: known boxes, corpus.pool.read_box_gold)
    project_id: int


def _now() -> datetime:
    return datetime.now(UTC)


@task
def claim_next_round(params: LabelRoundParams, data_root: str) -> int | None:
    """The number of the round this push opens. A round whose push died before its tasks were all in
    Label Studio is resumed; any other open round refuses the push (RoundOpenError) or, with
    if_open=skip, skips it (None)."""
    root = open_root(data_root)
    try:
        return claim_round(root, params.dataset)
    except RoundOpenError as refused:
        current = load_open_round(root, params.dataset)
        if current is not None and current.status == "opened" and _abandoned(current):
            get_run_logger().info("resuming the push of %s", current.id)
            return current.number
        if params.if_open == "skip":
            get_run_logger().info("nothing pushed: %s", refused)
            return None
        raise


# A push imports 1,000 tasks in under a second (notes/label-studio.md §7); one still "opened" after this long
# died, and the next push resumes it. Before that it may be running: a second push is refused, not joined.
RESUME_AFTER_S = 300


def _abandoned(round_: LabelRound) -> bool:
    return (_now() - datetime.fromisoformat(round_.opened_at)).total_seconds() > RESUME_AFTER_S


def _annotators(params: LabelRoundParams) -> int:
    """How many people take part: the parameter, else the organization's members but Flywheel's own login."""
    if params.annotators:
        return params.annotators
    own = get_settings().label_studio_user.lower()
    people = [name for name in open_label_studio().user_names().values() if name.lower() != own]
    return max(len(people), 1)


@task
def prepare_round(params: LabelRoundParams, data_root: str) -> RoundInputs:
    """Read the pool and the gold file; create (once) the project for this dataset and label set (another
    label set is refused), set its queue to per-task overlaps and its instructions, attach the media."""
    root = open_root(data_root)
    pool = params.pool or latest_pool(root)
    client = open_label_studio()
    detect = params.task == "detect"
    if detect:
        config = build_box_label_config(params.labels)
    elif params.task == "text":
        config = build_text_label_config(params.labels)
    else:
        config = build_label_config(params.labels, multiple=params.task == "multilabel")
    project_id = client.ensure_project(params.project, config)
    client.configure_queue(project_id)
    if params.definitions:
        client.set_instructions(project_id, build_instructions(params.labels, params.definitions, params.examples))
    attach_media(client, root, project_id, get_settings())
    settings = get_settings()
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        client.ensure_webhook(
            project_id, settings.webhook_url, headers={"X-Flywheel-Webhook": secret} if secret else {}
        )
    gold = (read_box_gold if detect else read_gold)(root, params.gold_path)
    return RoundInputs(data_root, pool, root.read_table(pool), gold, project_id)


def _labels_behind(root: DataRoot, model_version: str | None) -> int:
    """How many labeled records the newest model's release held (imported labels count, not only pushed ones)."""
    if model_version is None:
        return 0
    meta = read_metadata(root, model_version)
    return sum(int(meta.get(f"n_{split}") or 0) for split in ("train", "val", "test"))


@task
def choose_batch(params: LabelRoundParams, inputs: RoundInputs) -> RoundPlan:
    """Plan the round: the pool minus what Label Studio already has, chosen by the newest model if any (hybrid:
    its uncertainty, then diversity over the newest pretrained encoder's embeddings when they cover the pool,
    else over the model's), else by TypiClust over the encoder's embeddings (else by pixel diversity), with
    gold tasks mixed in."""
    pushed = set(open_label_studio().task_ids_by_record(inputs.project_id))
    root = open_root(inputs.data_root)
    model_version, predictions = newest_predictions(root, params.dataset)
    multilabel = params.task == "multilabel"
    if multilabel and predictions is not None:  # rank by the per-label margin (labeling.multilabel_quality)
        predictions = as_selection_predictions(predictions)
    wanted = params.strategy in ("auto", "hybrid", "typiclust", "probcover")
    _, pool_embeddings = newest_embeddings(root) if wanted else (None, None)
    if params.task == "text":  # TF-IDF projections until a text model embeds the pool (its hidden layer)
        pool_embeddings = text_embedding_table(inputs.records, seed=params.seed) if predictions is None else None
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
        min_per_class=0 if multilabel else params.min_per_class,  # a class quota needs one class per record
        pool_embeddings=pool_embeddings,
        n_classes=len(params.labels),
        kind=RECORD_KIND[params.task],
        task=params.task,
        labeled=max(len(pushed), _labels_behind(root, model_version)),
    )
    get_run_logger().info(
        "round plan: %d of %d candidates by %s%s%s, %d gold",
        len(plan.record_ids),
        plan.candidates,
        plan.strategy,
        f" (model {plan.model_version})" if plan.model_version else "",
        f" over {plan.embeddings} embeddings" if plan.embeddings else "",
        len(plan.gold),
    )
    return plan


@task
def record_opened(params: LabelRoundParams, inputs: RoundInputs, plan: RoundPlan, number: int) -> LabelRound:
    """Write the round (status opened) before its tasks are pushed, so a push that dies is resumed, not redone."""
    round_ = open_round(
        params.dataset,
        number,
        inputs.project_id,
        pool=inputs.pool,
        labels=params.labels,
        strategy=plan.strategy,
        model_version=plan.model_version,
        embeddings=plan.embeddings,
        task=params.task,
        record_ids=plan.record_ids,
        gold=plan.gold,
        params=params.model_dump(mode="json"),
        now=_now(),
        deadline_hours=params.deadline_hours,
    )
    round_.progress = {"priorities": plan.priorities}
    save_round(open_root(inputs.data_root), round_)
    return round_


@task
def push_batch(params: LabelRoundParams, inputs: RoundInputs, round_: LabelRound) -> dict[str, int]:
    """Send the round's records as tasks, with the model's predictions as pre-annotations. Idempotent and
    resumable: a journal keyed by record_id means a retry after an outage never imports a task twice."""
    root = open_root(inputs.data_root)
    client = open_label_studio()
    batch = select_records(inputs.records, round_.record_ids)
    predictions = None
    if round_.model_version:
        _, everything = newest_predictions(root, params.dataset)
        predictions = select_records(everything, round_.record_ids) if everything is not None else None
    # Imported labels under the preannotate policy pre-fill what no model predicts.
    imported = read_imported_predictions(
        root, origins_with_policy(root, ImportLabelPolicy.preannotate), round_.record_ids
    )
    multilabel = round_.task == "multilabel"
    if multilabel:  # imported labels are single-label: only the model's predicted sets pre-annotate
        imported = None
    predictions = merge_preannotations(predictions, round_.model_version, imported, labels=params.labels)
    if params.task == "text":
        tasks = build_text_tasks(
            batch,
            priorities=round_.progress.get("priorities"),
            predictions=predictions,
            labels=params.labels,
            model_version=round_.model_version,
        )
    else:
        tasks = build_tasks(
            batch,
            export_media(root, batch),
            priorities=round_.progress.get("priorities"),
            predictions=None if multilabel else predictions,
            labels=params.labels,
            model_version=round_.model_version,
            media_url=partial(media_uri, root),
            task=round_.task,
        )
    if multilabel:
        tasks = attach_label_set_predictions(tasks, predictions, round_.model_version)
    pushed = push_tasks(client, root, inputs.project_id, tasks)
    if version := preannotation_version(predictions, round_.model_version):
        client.set_model_version(inputs.project_id, version)
    return {rid: pushed["task_ids"][rid] for rid in round_.record_ids if rid in pushed["task_ids"]}


@task
def start_round(params: LabelRoundParams, round_: LabelRound, task_ids: dict[str, int]) -> LabelRound:
    """Make the planned overlap happen in Label Studio's queue (each task's overlap; gold for everyone), open
    the project on the round's tab, and mark the round labeling; announces flywheel.round.opened."""
    client = open_label_studio()
    people = _annotators(params)
    wanted = plan_task_overlaps(
        task_ids, k=params.overlap_k, fraction=params.overlap_fraction, gold=round_.gold, annotators=people
    )
    client.set_task_overlaps(overlaps_to_set(wanted, client.task_overlaps(round_.project_id)))
    view = client.ensure_view(
        round_.project_id,
        round_view_title(round_.number),
        sorted(task_ids.values()),
        hidden_columns=round_hidden_columns(),
        first=True,
    )
    overlap = {rid: wanted[task_ids[rid]] for rid in round_.record_ids if rid not in set(round_.gold)}
    started = start_labeling(round_, task_ids, overlap, _now())
    started.progress = {"needed": sum(overlap.values()) + people * len(round_.gold), "done": 0, "share_done": 0.0}
    started.progress["view_url"] = client.project_url(round_.project_id, view)
    root = open_root(data_root_url(params.data_root))
    save_round(root, started)
    announce(ROUND_OPENED, params.dataset, round_payload(started, root.url), resource=round_resource(started))
    create_markdown_artifact(
        key=artifact_key("round", params.dataset), markdown=progress_markdown(started), description=started.id
    )
    schedule_deadline_check(started, root.url)
    return started


# The check that sees a deadline pass runs this long after it: the round's last saves before the deadline are in.
DEADLINE_GRACE_S = 30


def schedule_deadline_check(round_: LabelRound, data_root: str) -> str | None:
    """Schedule a run of the label-check deployment at the round's deadline, so a round everyone stopped
    labeling closes then, not at the next 10-minute check. Returns the run's id; None (logged) where the
    deployments of deploy/prefect.yaml are not registered (the scheduled check still sees the deadline)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    when = datetime.fromisoformat(round_.deadline) + timedelta(seconds=DEADLINE_GRACE_S)
    try:
        run = run_deployment(
            CHECK_DEPLOYMENT,
            parameters={"dataset": round_.dataset, "data_root": data_root},
            scheduled_time=when,
            timeout=0,
            as_subflow=False,
            tags=["deadline"],
        )
    except ObjectNotFound:
        get_run_logger().info("no %s deployment: %s's deadline is seen by the next check", CHECK_DEPLOYMENT, round_.id)
        return None
    return str(run.id)


def round_resource(round_: LabelRound) -> dict[str, str]:
    return {"prefect.resource.id": f"flywheel.round.{round_.id}", "prefect.resource.name": round_.id}


def round_payload(round_: LabelRound, data_root: str) -> dict[str, Any]:
    """What every round event carries: enough for an automation to act on the round."""
    return {
        "dataset": round_.dataset,
        "round": round_.number,
        "round_id": round_.id,
        "project_id": round_.project_id,
        "data_root": data_root,
        "pool": round_.pool,
        "status": round_.status,
    }


@task
def pull_labels(data_root: str, project_id: int, task_type: str | None = None) -> dict[str, Any]:
    """Append the annotations created or changed since the last pull to annotations/, annotators by name
    (`task_type` "detect": an answer without rectangles is "no object")."""
    client = open_label_studio()
    return pull_annotations(client, open_root(data_root), project_id, names=client.user_names(), task_type=task_type)


@flow(name="label-push", log_prints=True)
def label_push_flow(params: LabelRoundParams) -> dict[str, Any]:
    """Open a label round: pick the next batch (diversity cold start, then the newest model's uncertainty),
    push it to Label Studio with the model's predictions as pre-annotations, and let people label at their
    own pace. At most one open round per dataset: another push is refused (or skipped, with if_open=skip);
    two pushes at the same moment open one round. Rerunning a push that died pushes nothing twice."""
    data_root = data_root_url(params.data_root)
    number = claim_next_round(params, data_root)
    if number is None:
        held = open_round_number(open_root(data_root), params.dataset)
        return {"dataset": params.dataset, "opened": False, "open_round": held}
    inputs = prepare_round(params, data_root)
    root = open_root(data_root)
    saved = load_open_round(root, params.dataset)
    if saved is not None and saved.number == number:
        round_ = saved
    else:
        round_ = record_opened(params, inputs, choose_batch(params, inputs), number)
    started = start_round(params, round_, push_batch(params, inputs, round_))
    return {
        "dataset": params.dataset,
        "opened": True,
        "round": started.number,
        "round_id": started.id,
        "project_id": started.project_id,
        "project_url": started.progress.get("view_url"),
        "pool": started.pool,
        "strategy": started.strategy,
        "model_version": started.model_version,
        "embeddings": started.embeddings,
        "tasks": len(started.tasks),
        "gold": len(started.gold),
        "deadline": started.deadline,
        "record_ids": started.record_ids,
        "task_ids": [started.tasks[rid] for rid in started.record_ids],
        "gold_task_ids": [started.tasks[rid] for rid in started.gold],
    }


@flow(name="label-pull", log_prints=True)
def label_pull_flow(project_title: str = "Flywheel demo", data_root: str | None = None) -> dict[str, Any]:
    """Pull new and changed annotations into annotations/ and report labels and agreement."""
    data_root = data_root_url(data_root)
    project_id = open_label_studio().find_project(project_title)
    if project_id is None:
        raise LookupError(f"no Label Studio project titled {project_title!r}: push a round first (flywheel label push)")
    pulled = pull_labels(data_root, project_id)
    return {"project_id": project_id, "pulled": pulled, **summarize_annotations(read_annotations(open_root(data_root)))}


def describe_round(data_root: str | None, dataset: str, number: int | None = None) -> dict[str, Any] | None:
    """A round as `flywheel label status` shows it: the open one (or `number`), or None when none is open."""
    root = open_root(data_root_url(data_root))
    round_ = load_round(root, dataset, number) if number else load_open_round(root, dataset)
    if round_ is None:
        return None
    shown = round_.to_dict()
    for bulky in ("record_ids", "tasks", "overlap", "params", "gold"):
        shown.pop(bulky)
    shown["tasks"], shown["gold"] = len(round_.record_ids), len(round_.gold)
    shown["progress"] = {k: v for k, v in round_.progress.items() if k != "priorities"}
    return shown


@flow(name="label-next-round", log_prints=True)
def label_next_round_flow(dataset: str, data_root: str | None = None, budget: int | None = None) -> dict[str, Any]:
    """Open the dataset's next round with the settings of its last one (labels, gold, gate, overlap), chosen
    by the newest model: what the flywheel.model.trained automation runs. `budget` overrides the last
    round's; 0 opens nothing (the automation's off switch beside disabling it). Skips while a round is open."""
    root = open_root(data_root_url(data_root))
    numbers = list_round_numbers(root, dataset)
    if not numbers:
        raise LookupError(f"dataset {dataset!r} has had no round yet: open the first with `flywheel label push`")
    last = LabelRoundParams.model_validate(load_round(root, dataset, numbers[-1]).params)
    planned = last.next_budgets
    if budget == 0 or planned == []:
        return {"dataset": dataset, "opened": False, "why": "budget 0" if budget == 0 else "no more rounds planned"}
    update: dict[str, Any] = {"if_open": "skip", "pool": None, "data_root": data_root or last.data_root}
    if planned:
        update.update(budget=planned[0], next_budgets=planned[1:])
    if budget is not None:
        update["budget"] = budget
    return label_push_flow(last.model_copy(update=update))
