"""What the Data Manager tabs show: the round tab and the review tab, their hidden columns and the review fields."""

from __future__ import annotations

import pyarrow as pa

from labeling.review import GOLD_MISMATCH, LIKELY_MISLABELED, LOW_CONFIDENCE

REVIEW_VIEW = "Flywheel review"
# Task data fields Flywheel keeps for itself: keys and sort keys, nothing an annotator decides on.
INTERNAL_DATA_FIELDS = ("record_id", "page_url", "priority")
# Task data fields written on review-set tasks (update_task_data) so the review tab can show them.
REVIEW_DATA_FIELDS = ("review_reasons", "aggregated_label", "aggregated_confidence")
# Data Manager system columns that say nothing to an annotator or reviewer (ids from Label Studio's
# data_manager.functions.get_all_columns, checked against a 1.23.2 server's /api/dm/columns); kept: id,
# completed_at, total_annotations, annotators.
NOISE_COLUMNS = (
    "inner_id",
    "cancelled_annotations",
    "total_predictions",
    "annotations_results",
    "annotations_ids",
    "predictions_score",
    "predictions_model_versions",
    "predictions_results",
    "file_upload",
    "storage_filename",
    "created_at",
    "updated_at",
    "updated_by",
    "avg_lead_time",
    "draft_exists",
)
# How a reason reads in the review tab's column.
REASON_TEXT = {
    LOW_CONFIDENCE: "low confidence",
    GOLD_MISMATCH: "gold missed",
    LIKELY_MISLABELED: "likely mislabeled",
    # a detect round's (labeling.box_rounds): an annotator's boxes against the consensus
    "box_missing": "box missing",
    "box_extra": "extra box",
    "box_misplaced": "box misplaced",
    "box_wrong_label": "box label wrong",
}


def round_view_title(round_number: int) -> str:
    """The tab a round's annotators open the project on."""
    return f"Round {int(round_number)}"


def _data_columns(fields: tuple[str, ...]) -> list[str]:
    return [f"tasks:data.{name}" for name in fields]


def round_hidden_columns() -> list[str]:
    """Columns hidden in a round's tab: the internal fields, the review fields and the system noise."""
    return _data_columns(INTERNAL_DATA_FIELDS + REVIEW_DATA_FIELDS) + [f"tasks:{c}" for c in NOISE_COLUMNS]


# Also hidden in the review tab: when a task was completed says nothing about why it is reviewed, and its wide
# column pushed aggregated_confidence past the right edge at 1400x900 (seen in Chromium:
# deploy/browser/check_round_ui.py).
REVIEW_NOISE_COLUMNS = ("completed_at",)


def review_hidden_columns() -> list[str]:
    """Columns hidden in the review tab: as a round's tab, but the reasons and the aggregated label stay, and
    the completion date goes too (REVIEW_NOISE_COLUMNS)."""
    return _data_columns(INTERNAL_DATA_FIELDS) + [f"tasks:{c}" for c in NOISE_COLUMNS + REVIEW_NOISE_COLUMNS]


def review_task_fields(review: pa.Table) -> dict[str, dict]:
    """record_id -> the task data fields (REVIEW_DATA_FIELDS) for each row of a review set (REVIEW_SET_SCHEMA).

    Reasons read as words ("gold missed, low confidence"); the confidence is rounded to 2 places, as a
    reviewer reads it; a missing label or confidence is an empty string, which the column shows as blank.
    """
    out: dict[str, dict] = {}
    for row in review.to_pylist():
        confidence = row.get("label_confidence")
        out[row["record_id"]] = {
            "review_reasons": ", ".join(REASON_TEXT.get(r, r) for r in row["reasons"]),
            "aggregated_label": row.get("label") or "",
            "aggregated_confidence": "" if confidence is None else round(float(confidence), 2),
        }
    return out
