"""Annotation sync: pull Label Studio annotations incrementally into the append-only `annotations/` store."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from corpus.schema import ANNOTATION_SCHEMA
from corpus.store import DataRoot
from labeling.client import LabelStudioClient
from labeling.quality import latest_versions

log = logging.getLogger(__name__)

ANNOTATIONS_DIR = "annotations"


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


def read_annotations(root: DataRoot) -> pa.Table:
    """Every annotation ever pulled, newest version of each (ANNOTATION_SCHEMA; deleted ones flagged)."""
    return latest_versions(root.read_table(ANNOTATIONS_DIR, schema=ANNOTATION_SCHEMA))


def _row(project_id: int, task: dict, annotation: dict, pulled_at: datetime) -> dict:
    completed_by = annotation.get("completed_by")
    return {
        "annotation_id": int(annotation["id"]),
        "task_id": int(task["id"]),
        "project_id": int(project_id),
        "record_id": str(task["data"]["record_id"]),
        "label": extract_choice(annotation.get("result") or []),
        "annotator": None if completed_by is None else str(completed_by),
        "created_at": _parse_time(annotation.get("created_at")),
        "updated_at": _parse_time(annotation.get("updated_at")),
        "lead_time": annotation.get("lead_time"),
        "was_cancelled": bool(annotation.get("was_cancelled")),
        "deleted": False,
        "pulled_at": pulled_at,
    }


def _same(stored: dict, fresh: dict) -> bool:
    keys = ("updated_at", "label", "was_cancelled", "annotator", "deleted")
    return all(stored[k] == fresh[k] for k in keys)


def pull_annotations(client: LabelStudioClient, root: DataRoot, project_id: int, *, full: bool = False) -> dict:
    """Append the project's new and changed annotations to `annotations/part-<utc>-<project>.parquet`.

    Incremental: asks only for tasks touched since the previous pull's watermark (kept in
    `annotations/_state_<project>.json`); `full=True` re-reads every annotated task and also marks
    annotations that vanished from Label Studio as deleted. A row is written only when its
    (annotation_id, updated_at, label, ...) differs from what is stored, so a rerun with nothing new
    writes nothing. Tasks without `record_id` in their data are not Flywheel's and are counted as skipped.
    Returns {"new", "updated", "deleted", "skipped", "total"} (total = live annotations of the project).
    """
    state_path = _state_path(project_id)
    state = root.read_json(state_path) if root.exists(state_path) else {}
    since = None if full or not state.get("watermark") else _parse_time(state["watermark"])
    # The watermark is the moment just before asking, so anything saved during the pull is seen next time.
    pulled_at = datetime.now(UTC)
    tasks = client.list_annotated_tasks(project_id, since=since)

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
            fresh = _row(project_id, task, annotation, pulled_at)
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
