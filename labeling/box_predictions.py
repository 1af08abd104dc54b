"""Pre-annotations for detection: a detector's predicted boxes as Label Studio RectangleLabels predictions."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from labeling.box_results import boxes_to_studio_result

# Boxes shown to annotators: scores >= 0.3, CenterNet's own display threshold (its demo's vis_thresh); the
# weaker peaks kept in the predictions (for selection) would only be clutter to delete.
PREANNOTATION_MIN_SCORE = 0.3


def _image_size(boxes: list[dict[str, Any]]) -> tuple[int, int]:
    """(width, height) of the image the boxes are on, from any box's pixels over its normalised size."""
    box = boxes[0]
    return round(box["w"] / box["w_norm"]), round(box["h"] / box["h_norm"])


def build_box_predictions(
    task_ids_by_record: dict[str, int],
    predictions: pa.Table,
    labels: list[str],
    model_version: str | None,
    *,
    min_score: float = PREANNOTATION_MIN_SCORE,
    from_name: str = "label",
    to_name: str = "image",
) -> list[dict]:
    """Label Studio prediction dicts for records that have a task: the predicted boxes scoring >= min_score as
    RectangleLabels regions (each with its score), the prediction's score the image-level `confidence` (low =
    unsure), its model_version the row's `model_version` column where set, else `model_version`. An image with
    no box that sure gets an empty result: the model's answer "nothing here". A box label outside `labels`
    raises ValueError naming the record, since Label Studio could not show it."""
    missing = [c for c in ("record_id", "boxes", "confidence") if c not in predictions.column_names]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    known = set(labels)
    n = predictions.num_rows
    versions = (
        predictions.column("model_version").to_pylist() if "model_version" in predictions.column_names else [None] * n
    )
    rows = zip(
        predictions.column("record_id").to_pylist(),
        predictions.column("boxes").to_pylist(),
        predictions.column("confidence").to_pylist(),
        versions,
        strict=True,
    )
    out = []
    for record_id, boxes, confidence, row_version in rows:
        task_id = task_ids_by_record.get(record_id)
        if task_id is None or boxes is None:
            continue
        shown = [b for b in boxes if b.get("score") is None or b["score"] >= min_score]
        unknown = sorted({b["label"] for b in shown} - known)
        if unknown:
            raise ValueError(f"record {record_id}: predicted box labels {unknown} are not among {labels}")
        names = {"from_name": from_name, "to_name": to_name}
        result = boxes_to_studio_result(shown, *_image_size(shown), **names) if shown else []
        out.append(
            {
                "task": int(task_id),
                "model_version": row_version or model_version,
                "score": float(confidence) if confidence is not None else None,
                "result": result,
            }
        )
    return out
