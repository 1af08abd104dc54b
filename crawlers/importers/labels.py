"""Imported labels as Flywheel stores labels: annotation rows with their origin, and pre-annotation rows."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from corpus.boxes import BOXES_TYPE
from corpus.schema import ANNOTATION_SCHEMA, PREDICTION_SCHEMA, RECORD_SCHEMA
from corpus.store import DataRoot

# Imported annotations belong to no Label Studio project: project 0 and task 0 are never Label Studio ids
# (they start at 1), so a full pull of a real project never marks them deleted.
IMPORT_PROJECT_ID = 0
IMPORT_TASK_ID = 0

# New boxes a re-import found for records imported before (the record keeps its row; a release takes the
# newest boxes of each record from here): imports/<source>/box_updates/<import run>-part-*.parquet.
BOX_UPDATES = "box_updates"
BOX_UPDATE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("boxes", BOXES_TYPE),
        pa.field("label_source", pa.string()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def imported_annotation_id(origin: str, record_id: str) -> int:
    """A stable negative id for the label `origin` gives `record_id` (Label Studio's ids are positive), so a
    re-import of a changed label is a newer version of the same annotation, not a second vote."""
    digest = hashlib.sha256(f"{origin}\0{record_id}".encode()).digest()
    return -(int.from_bytes(digest[:8], "big") >> 1) - 1


def _table(columns: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """`columns` as a `schema` table, the schema's other columns null (an imported class label has no boxes)."""
    n = len(next(iter(columns.values())))
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)


def annotation_rows(
    labels: Sequence[tuple[str, str | None]],
    origin: str,
    at: datetime,
    label_sets: Sequence[list[str] | None] | None = None,
) -> pa.Table:
    """ANNOTATION_SCHEMA rows for (record_id, label) pairs, annotator `origin` (`imported:<source>`); with
    `label_sets` (one per pair) a row's set is its multi-label answer (its `label` is then None)."""
    n = len(labels)
    sets = pa.nulls(n, ANNOTATION_SCHEMA.field("labels").type) if label_sets is None else label_sets
    return _table(
        {
            "annotation_id": [imported_annotation_id(origin, rid) for rid, _ in labels],
            "task_id": [IMPORT_TASK_ID] * n,
            "project_id": [IMPORT_PROJECT_ID] * n,
            "record_id": [rid for rid, _ in labels],
            "label": [label for _, label in labels],
            "labels": pa.array(sets, ANNOTATION_SCHEMA.field("labels").type),  # boxes live on the record
            "boxes": pa.nulls(n, ANNOTATION_SCHEMA.field("boxes").type),
            "annotator": [origin] * n,
            "created_at": [at] * n,
            "updated_at": [at] * n,
            "lead_time": pa.nulls(n, pa.float64()),
            "was_cancelled": [False] * n,
            "deleted": [False] * n,
            "pulled_at": [at] * n,
        },
        ANNOTATION_SCHEMA,
    )


def prediction_rows(labels: Sequence[tuple[str, str | None]]) -> pa.Table:
    """PREDICTION_SCHEMA rows (confidence 1.0) for (record_id, label) pairs: what labeling.studio_tasks.build_tasks
    attaches to a task as a pre-annotation for the annotator to confirm. A label set comes as its ";"-joined
    form (corpus.releases.multilabel.join_label_set): the schema has one predicted label column."""
    n = len(labels)
    return _table(
        {
            "record_id": [rid for rid, _ in labels],
            "predicted_label": [label for _, label in labels],
            "confidence": pa.array([1.0] * n, pa.float32()),
            "probs": pa.nulls(n, pa.list_(pa.float32())),
            "embedding": pa.nulls(n, pa.list_(pa.float32())),
            "boxes": pa.nulls(n, PREDICTION_SCHEMA.field("boxes").type),
        },
        PREDICTION_SCHEMA,
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


def label_kinds(root: DataRoot, origins: Sequence[str], raw_dir: str = "raw") -> dict[str, set[str]]:
    """origin -> the kinds of answer its imports under `raw_dir` wrote: "sets" (label sets) and/or "single"
    (one label a record), from each import report's `labels` and `label_sets` counts; only `origins`."""
    kinds: dict[str, set[str]] = {origin: set() for origin in origins}
    for run in root.list_dirs(raw_dir):
        path = f"{raw_dir}/{run}/_report.json"
        report = root.read_json(path) if root.exists(path) else {}
        if report.get("label_origin") not in kinds:
            continue
        sets, labels = int(report.get("label_sets") or 0), int(report.get("labels") or 0)
        found = kinds[report["label_origin"]]
        found.update(["sets"] if sets else [])
        found.update(["single"] if labels > sets else [])
    return kinds


def read_box_updates(root: DataRoot, imports_dir: str = "imports") -> pa.Table:
    """Every box update of every import source (BOX_UPDATE_SCHEMA), empty when there is none."""
    parts = []
    for source in root.list_dirs(imports_dir):
        folder = f"{imports_dir}/{source}/{BOX_UPDATES}"
        if root.exists(folder):
            parts.append(root.read_table(folder, BOX_UPDATE_SCHEMA))
    return pa.concat_tables(parts) if parts else BOX_UPDATE_SCHEMA.empty_table()


def apply_box_updates(records: pa.Table, updates: pa.Table) -> pa.Table:
    """`records` with the boxes (and label_source) of each record that `updates` (BOX_UPDATE_SCHEMA) has boxes
    for replaced by its newest update; other rows as they are; pure."""
    if updates.num_rows == 0 or records.num_rows == 0:
        return records
    newest = updates.sort_by([("record_id", "ascending"), ("updated_at", "descending")])
    ids = newest.column("record_id").to_pylist()
    keep = [k for k in range(len(ids)) if k == 0 or ids[k] != ids[k - 1]]
    newest = newest.take(pa.array(keep, pa.int64()))
    at = pc.index_in(records.column("record_id"), value_set=newest.column("record_id"))
    found = pc.is_valid(at)
    if not pc.any(found).as_py():
        return records
    taken = newest.take(pc.fill_null(at, 0))
    out = records
    for name in ("boxes", "label_source"):
        column = pc.if_else(found, taken.column(name), records.column(name)).cast(RECORD_SCHEMA.field(name).type)
        out = out.set_column(out.schema.get_field_index(name), name, column)
    return out
