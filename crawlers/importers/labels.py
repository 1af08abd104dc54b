"""Imported labels as Flywheel stores labels: annotation rows with their origin, and pre-annotation rows."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa

from corpus.schema import ANNOTATION_SCHEMA, PREDICTION_SCHEMA
from corpus.store import DataRoot

# Imported annotations belong to no Label Studio project: project 0 and task 0 are never Label Studio ids
# (they start at 1), so a full pull of a real project never marks them deleted.
IMPORT_PROJECT_ID = 0
IMPORT_TASK_ID = 0


def imported_annotation_id(origin: str, record_id: str) -> int:
    """A stable negative id for the label `origin` gives `record_id` (Label Studio's ids are positive), so a
    re-import of a changed label is a newer version of the same annotation, not a second vote."""
    digest = hashlib.sha256(f"{origin}\0{record_id}".encode()).digest()
    return -(int.from_bytes(digest[:8], "big") >> 1) - 1


def annotation_rows(labels: Sequence[tuple[str, str]], origin: str, at: datetime) -> pa.Table:
    """ANNOTATION_SCHEMA rows for (record_id, label) pairs, annotator `origin` (`imported:<source>`)."""
    n = len(labels)
    return pa.table(
        {
            "annotation_id": [imported_annotation_id(origin, rid) for rid, _ in labels],
            "task_id": [IMPORT_TASK_ID] * n,
            "project_id": [IMPORT_PROJECT_ID] * n,
            "record_id": [rid for rid, _ in labels],
            "label": [label for _, label in labels],
            "labels": pa.nulls(n, ANNOTATION_SCHEMA.field("labels").type),
            "boxes": pa.nulls(n, ANNOTATION_SCHEMA.field("boxes").type),
            "annotator": [origin] * n,
            "created_at": [at] * n,
            "updated_at": [at] * n,
            "lead_time": pa.nulls(n, pa.float64()),
            "was_cancelled": [False] * n,
            "deleted": [False] * n,
            "pulled_at": [at] * n,
        },
        schema=ANNOTATION_SCHEMA,
    )


def prediction_rows(labels: Sequence[tuple[str, str]]) -> pa.Table:
    """PREDICTION_SCHEMA rows (confidence 1.0) for (record_id, label) pairs: what labeling.studio_tasks.build_tasks
    attaches to a task as a pre-annotation for the annotator to confirm."""
    n = len(labels)
    return pa.table(
        {
            "record_id": [rid for rid, _ in labels],
            "predicted_label": [label for _, label in labels],
            "confidence": pa.array([1.0] * n, pa.float32()),
            "probs": pa.nulls(n, pa.list_(pa.float32())),
            "embedding": pa.nulls(n, pa.list_(pa.float32())),
            "boxes": pa.nulls(n, PREDICTION_SCHEMA.field("boxes").type),
        },
        schema=PREDICTION_SCHEMA,
    )


def origins_with_policy(root: DataRoot, policy: str, raw_dir: str = "raw") -> list[str]:
    """The label origins (`imported:<source>`) of the imports under `raw_dir/*/_report.json` whose label policy
    is `policy` (the newest import of a source decides: a source re-imported as `annotator` is no longer
    trusted), sorted. Crawl reports, which have no label policy, are skipped."""
    newest: dict[str, tuple[str, str]] = {}
    for run in root.list_dirs(raw_dir):
        path = f"{raw_dir}/{run}/_report.json"
        if not root.exists(path):
            continue
        report = root.read_json(path)
        origin, used = report.get("label_origin"), report.get("label_policy")
        if not origin or not used:
            continue
        at = str(report.get("finished_at") or "")
        if origin not in newest or at >= newest[origin][0]:
            newest[origin] = (at, used)
    return sorted(origin for origin, (_, used) in newest.items() if used == policy)
