"""Sync with Label Studio: journaled, exactly-once task pushes and incremental annotation pulls into `annotations/`."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import ANNOTATION_SCHEMA
from corpus.store import DataRoot
from labeling.annotators import annotator_name
from labeling.box_results import RESULT_TYPE as BOX_RESULT_TYPE
from labeling.box_results import boxes_from_studio_result
from labeling.client import LabelStudioApiError, LabelStudioClient, is_retryable
from labeling.quality import latest_versions

log = logging.getLogger(__name__)

ANNOTATIONS_DIR = "annotations"
PUSH_DIR = "label_pushes"
# Tasks per import call: 1,000 imports in 0.65 s (notes/label-studio.md §7), so a lost batch costs little to redo.
PUSH_BATCH = 1000
# Tries per batch with 0.5 s doubling backoff capped at 8 s: ~60 s in all, long enough to ride out a server
# restart (6-10 s from a warm data dir, notes §2) and a SQLite lock, short enough to fail a flow run.
PUSH_TRIES = 10
PUSH_BACKOFF_S = 0.5
PUSH_BACKOFF_MAX_S = 8.0


def _state_path(project_id: int) -> str:
    return f"{ANNOTATIONS_DIR}/_state_{project_id}.json"


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def extract_choice(result: list[dict]) -> str | None:
    """The chosen class of a single-choice result (the first `choices` value), or None if there is none."""
    for region in result or []:
        if region.get("type") == "choices":
            choices = (region.get("value") or {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def extract_boxes(result: list[dict], *, detect: bool = False, annotation_id: object = "?") -> list[dict] | None:
    """The boxes (rows of BOX_TYPE) of a result's rectangles, the image size taken from each rectangle's
    original_width/height. In a detect round (`detect`) a result without rectangles is [] ("no object");
    elsewhere None. A rectangle that cannot be read (no size, no label) is logged and gives None: the
    annotation stays in Label Studio, and the round counts it as unanswered rather than as "no object"."""
    if not any(region.get("type") == BOX_RESULT_TYPE for region in result or []):
        return [] if detect else None
    try:
        return boxes_from_studio_result(result)[0]
    except ValueError as exc:
        log.warning("annotation %s: its rectangles cannot be read (%s); stored without boxes", annotation_id, exc)
        return None


def extract_choices(result: list[dict]) -> list[str] | None:
    """Every chosen class of a choices result, in order (a multiple choice's set; [] for an empty result: "none
    of these"), or None when the result holds regions of another kind (boxes) and no choices."""
    chosen: list[str] = []
    other = False
    for region in result or []:
        if region.get("type") == "choices":
            chosen.extend(str(c) for c in (region.get("value") or {}).get("choices") or [] if str(c) not in chosen)
        else:
            other = True
    return None if other and not chosen else chosen


def read_annotations(root: DataRoot) -> pa.Table:
    """Every annotation ever pulled, newest version of each (ANNOTATION_SCHEMA; deleted ones flagged)."""
    return latest_versions(root.read_table(ANNOTATIONS_DIR, schema=ANNOTATION_SCHEMA))


def _row(
    project_id: int, task: dict, annotation: dict, pulled_at: datetime, names: dict[int, str], detect: bool = False
) -> dict:
    completed_by = annotation.get("completed_by")
    cancelled = bool(annotation.get("was_cancelled"))
    return {
        "annotation_id": int(annotation["id"]),
        "task_id": int(task["id"]),
        "project_id": int(project_id),
        "record_id": str(task["data"]["record_id"]),
        "label": extract_choice(annotation.get("result") or []),
        "boxes": None
        if cancelled
        else extract_boxes(annotation.get("result") or [], detect=detect, annotation_id=annotation.get("id")),
        "labels": None if cancelled else extract_choices(annotation.get("result") or []),
        "annotator": annotator_name(completed_by, names)
        if names
        else None
        if completed_by is None
        else str(completed_by),
        "created_at": _parse_time(annotation.get("created_at")),
        "updated_at": _parse_time(annotation.get("updated_at")),
        "lead_time": annotation.get("lead_time"),
        "was_cancelled": cancelled,
        "deleted": False,
        "pulled_at": pulled_at,
    }


def _same(stored: dict, fresh: dict) -> bool:
    keys = ("updated_at", "label", "labels", "boxes", "was_cancelled", "annotator", "deleted")
    return all(stored[k] == fresh[k] for k in keys)


def pull_annotations(
    client: LabelStudioClient,
    root: DataRoot,
    project_id: int,
    *,
    full: bool = False,
    tries: int | None = None,
    names: dict[int, str] | None = None,
    task_type: str | None = None,
) -> dict:
    """Append the project's new and changed annotations to `annotations/part-<utc>-<project>.parquet`.

    Incremental: asks only for tasks touched since the previous pull's watermark (kept in
    `annotations/_state_<project>.json`); `full=True` re-reads every annotated task and also marks
    annotations that vanished from Label Studio as deleted. A row is written only when its
    (annotation_id, updated_at, label, ...) differs from what is stored, so a rerun with nothing new
    writes nothing. Tasks without `record_id` in their data are not Flywheel's and are counted as skipped.
    A listing that fails (server down or restarted) is retried by the client (`tries` tries, default the
    client's own); nothing is written and the watermark does not move until a listing succeeds, so a
    crashed pull loses nothing.
    With `names` (user id -> username or email, client.user_names()) annotators are stored by name, so
    scorecards, artifacts and releases never show a numeric id; without, as str(user id).
    `task_type` "detect" stores an answer without rectangles as [] boxes ("no object"; extract_boxes).
    Returns {"new", "updated", "deleted", "skipped", "total"} (total = live annotations of the project).
    """
    state_path = _state_path(project_id)
    state = root.read_json(state_path) if root.exists(state_path) else {}
    since = None if full or not state.get("watermark") else _parse_time(state["watermark"])
    # The watermark is the moment just before asking, so anything saved during the pull is seen next time.
    pulled_at = datetime.now(UTC)
    lister = client if tries is None else client.with_tries(tries)
    tasks = lister.list_annotated_tasks(project_id, since=since)

    stored_table = read_annotations(root)
    stored_table = stored_table.filter(pc.equal(stored_table.column("project_id"), project_id))
    stored = {row["annotation_id"]: row for row in stored_table.to_pylist()}

    rows: list[dict] = []
    counts = {"new": 0, "updated": 0, "deleted": 0, "skipped": 0}
    seen: set[int] = set()
    seen_tasks: set[int] = set()
    for task in tasks:
        if (task.get("data") or {}).get("record_id") is None:
            counts["skipped"] += len(task["annotations"])
            continue
        seen_tasks.add(int(task["id"]))
        for annotation in task["annotations"]:
            fresh = _row(project_id, task, annotation, pulled_at, names or {}, task_type == "detect")
            seen.add(fresh["annotation_id"])
            old = stored.get(fresh["annotation_id"])
            if old is None:
                counts["new"] += 1
            elif _same(old, fresh):
                continue
            else:
                counts["updated"] += 1
            rows.append(fresh)
    # An annotation missing from a task we just re-read (or from the whole project on a full pull) was deleted.
    for annotation_id, old in stored.items():
        if old["deleted"] or annotation_id in seen:
            continue
        if full or old["task_id"] in seen_tasks:
            rows.append({**old, "deleted": True, "pulled_at": pulled_at})
            counts["deleted"] += 1

    if rows:
        stamp = pulled_at.strftime("%Y%m%dT%H%M%S%fZ")
        table = pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)
        root.write_table(f"{ANNOTATIONS_DIR}/part-{stamp}-{project_id}.parquet", table)
    # Written after the data, so a crash in between re-pulls (harmlessly) instead of skipping.
    root.write_json(state_path, {"watermark": pulled_at.isoformat(), "project_id": project_id})

    live = {aid for aid, old in stored.items() if not old["deleted"]}
    for row in rows:
        (live.discard if row["deleted"] else live.add)(row["annotation_id"])
    if counts["skipped"]:
        log.warning("project %s: %d annotations on tasks without record_id were skipped", project_id, counts["skipped"])
    return {**counts, "total": len(live)}


def _push_journal_path(project_id: int) -> str:
    return f"{PUSH_DIR}/_journal_{project_id}.json"


def push_tasks(
    client: LabelStudioClient,
    root: DataRoot,
    project_id: int,
    tasks: list[dict],
    *,
    batch_size: int = PUSH_BATCH,
    tries: int = PUSH_TRIES,
) -> dict:
    """Import `tasks` into the project exactly once each, keyed by `data.record_id`; safe to rerun or resume.

    A journal (`label_pushes/_journal_<project>.json`: record_id -> task id, and the highest task id
    confirmed) is written after every batch, and the batch about to be sent is written before it goes.
    When an import fails (server down, restarted, 5xx), the tasks Label Studio created above the last
    confirmed id are read back before anything is sent again, so a batch whose response was lost is
    never imported twice; the rest of the batch is retried with backoff. Tasks may carry inline
    `predictions` (imported with their task, in the same call). Without a journal the project's
    tasks are listed once, so tasks pushed by other means are not duplicated either.
    Returns {"pushed", "already_present", "task_ids" (record_id -> task id for every input task)}.
    """
    if batch_size < 1 or tries < 1:
        raise ValueError("batch_size and tries must be >= 1")
    for task in tasks:
        if (task.get("data") or {}).get("record_id") is None:
            raise ValueError("every task needs data.record_id: it is the key that makes a push idempotent")
    path = _push_journal_path(project_id)
    if root.exists(path):
        journal = root.read_json(path)
    else:
        known = client.task_ids_by_record(project_id)
        journal = {"project_id": project_id, "max_task_id": max(known.values(), default=0), "tasks": known}
    known: dict[str, int] = journal["tasks"]
    if journal.get("in_flight"):
        # A previous run died with a batch in flight: learn what of it reached Label Studio before resending.
        _reconcile(client, project_id, journal)
        root.write_json(path, journal)

    wanted: list[dict] = []
    queued: set[str] = set()
    for task in tasks:
        record_id = str(task["data"]["record_id"])
        if record_id not in known and record_id not in queued:
            wanted.append(task)
            queued.add(record_id)
    pushed = 0
    for start in range(0, len(wanted), batch_size):
        batch = wanted[start : start + batch_size]
        journal["in_flight"] = [str(t["data"]["record_id"]) for t in batch]
        root.write_json(path, journal)
        pushed += _push_batch(client, project_id, batch, journal, tries)
        journal["in_flight"] = []
        root.write_json(path, journal)
    ids = {str(t["data"]["record_id"]): known[str(t["data"]["record_id"])] for t in tasks}
    return {"pushed": pushed, "already_present": len(tasks) - pushed, "task_ids": ids}


def _reconcile(client: LabelStudioClient, project_id: int, journal: dict) -> int:
    """Add to the journal the tasks Label Studio holds above its last confirmed id; returns how many."""
    found = client.task_ids_after(project_id, journal["max_task_id"])
    journal["tasks"].update(found)
    journal["max_task_id"] = max([journal["max_task_id"], *found.values()])
    journal["in_flight"] = []
    return len(found)


def _push_batch(client: LabelStudioClient, project_id: int, batch: list[dict], journal: dict, tries: int) -> int:
    known: dict[str, int] = journal["tasks"]
    created = 0
    for attempt in range(1, tries + 1):
        remaining = [t for t in batch if str(t["data"]["record_id"]) not in known]
        if not remaining:
            return created
        try:
            # retry=False: a blind retry after a lost response would import the batch twice.
            ids = client.import_tasks(project_id, remaining, retry=False)
        except LabelStudioApiError as exc:
            if attempt == tries or not is_retryable(exc):
                raise
            delay = min(PUSH_BACKOFF_S * 2 ** (attempt - 1), PUSH_BACKOFF_MAX_S)
            log.warning("push to project %s failed (%s); reconciling and retrying in %.1f s", project_id, exc, delay)
            time.sleep(delay)
            try:
                before = len(known)
                # One try: this loop is the retry layer, the client must not multiply it.
                _reconcile(client.with_tries(1), project_id, journal)
                created += len(known) - before
            except LabelStudioApiError as again:
                if not is_retryable(again):
                    raise
            continue
        for task, task_id in zip(remaining, ids, strict=True):
            known[str(task["data"]["record_id"])] = task_id
        journal["max_task_id"] = max([journal["max_task_id"], *ids])
        created += len(ids)
        return created
    return created
