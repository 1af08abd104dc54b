"""Quality of boxes: agreement between annotators as IoU-matched F1, fusion of a round's boxes, box-error flags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pyarrow as pa

from corpus.boxes import BOXES_TYPE, BoxSet, box_set_from_rows, build_boxes, xyxy_to_xywh
from labeling.box_fusion import FUSION_IOU, annotator_weights, fuse_boxes, keep_supported, match_boxes

# Two boxes are the same object at IoU >= 0.5: the PASCAL VOC criterion (Everingham et al. 2010, "The PASCAL
# Visual Object Classes (VOC) Challenge", IJCV 88) and mAP@0.5's; below it a matched box is misplaced.
MATCH_IOU = 0.5
# Below this IoU two boxes are not even a poor drawing of one object: one is missing, the other extra.
# A chosen value: at 0.1 a box shifted by most of its own width still pairs with its object.
MISPLACED_FLOOR_IOU = 0.1
# A fused box that at least half the annotators' weight drew is kept as the release's; the other half of a
# split vote is better reviewed than dropped, which the flags below do. Majority, not a measurement.
MIN_SUPPORT = 0.5
BOX_ERROR_REASONS = ("missing", "extra", "misplaced", "wrong_label")

BOX_ERROR_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("suggested_label", pa.string()),
        pa.field("iou", pa.float64()),
        pa.field("xyxy", pa.list_(pa.float64(), 4)),
    ]
)


def compute_box_f1(
    first: BoxSet, second: BoxSet, iou_threshold: float = MATCH_IOU, *, same_label: bool = True
) -> float:
    """F1 in [0, 1] of two box sets matched one-to-one at IoU >= iou_threshold (and the same label when
    `same_label`): 2 x matches / (boxes in first + boxes in second); 1 when both are empty. Low = disagree."""
    total = len(first.xyxy) + len(second.xyxy)
    if not total:
        return 1.0
    pairs, _ = match_boxes(first, second, iou_threshold, same_label=same_label)
    return 2.0 * len(pairs) / total


def find_box_errors(
    candidate: BoxSet, reference: BoxSet, *, match_iou: float = MATCH_IOU, floor_iou: float = MISPLACED_FLOOR_IOU
) -> list[dict]:
    """Flags of a candidate box set against a reference (fused or gold) one, each with its reason from
    BOX_ERROR_REASONS: `missing` (a reference box nothing in candidate matches), `extra` (a candidate box
    matching nothing), `misplaced` (matched, IoU in [floor_iou, match_iou)), `wrong_label` (matched at IoU
    >= match_iou, another label). Matching is label-blind, so a box drawn well with the wrong label is one
    wrong_label flag, not a missing and an extra one. Each flag: reason, label, suggested_label, iou, xyxy."""
    pairs, ious = match_boxes(candidate, reference, floor_iou)
    flags = []
    for (c, r), iou in zip(pairs.tolist(), ious.tolist(), strict=True):
        label, suggested = str(candidate.labels[c]), str(reference.labels[r])
        if iou < match_iou:
            flags.append(_flag("misplaced", label, suggested, iou, candidate.xyxy[c]))
        elif label != suggested:
            flags.append(_flag("wrong_label", label, suggested, iou, candidate.xyxy[c]))
    for r in sorted(set(range(len(reference.xyxy))) - set(pairs[:, 1].tolist())):
        flags.append(_flag("missing", None, str(reference.labels[r]), None, reference.xyxy[r]))
    for c in sorted(set(range(len(candidate.xyxy))) - set(pairs[:, 0].tolist())):
        flags.append(_flag("extra", str(candidate.labels[c]), None, None, candidate.xyxy[c]))
    return flags


def _flag(reason: str, label: str | None, suggested: str | None, iou: float | None, xyxy: np.ndarray) -> dict:
    return {"reason": reason, "label": label, "suggested_label": suggested, "iou": iou, "xyxy": xyxy.tolist()}


def _by_record(annotations: pa.Table) -> dict[str, list[dict]]:
    """record_id -> its BOX_ANNOTATION_SCHEMA rows, annotators in name order (fusion order must not depend on
    the order rows were pulled in)."""
    grouped: dict[str, list[dict]] = {}
    for row in annotations.select(["record_id", "annotator", "width", "height", "boxes"]).to_pylist():
        grouped.setdefault(row["record_id"], []).append(row)
    return {record: sorted(rows, key=lambda r: r["annotator"]) for record, rows in grouped.items()}


def compute_annotator_agreement(
    images: Sequence[Sequence[tuple[str, BoxSet]]], iou_threshold: float = MATCH_IOU
) -> dict:
    """Agreement over images, each given as (annotator, its boxes) pairs: the mean IoU-matched F1 (same label)
    over every pair of annotators of every image two or more annotated (`f1`, in [0, 1], low = disagree; None
    without such an image), the number of pairs, and each annotator's mean F1 with the others
    (`per_annotator`)."""
    scores: list[float] = []
    per_annotator: dict[str, list[float]] = {}
    for drawn in images:
        for (first, boxes_first), (second, boxes_second) in combinations(drawn, 2):
            f1 = compute_box_f1(boxes_first, boxes_second, iou_threshold)
            scores.append(f1)
            per_annotator.setdefault(first, []).append(f1)
            per_annotator.setdefault(second, []).append(f1)
    return {
        "f1": float(np.mean(scores)) if scores else None,
        "pairs": len(scores),
        "per_annotator": {name: float(np.mean(values)) for name, values in sorted(per_annotator.items())},
    }


def compute_box_agreement(annotations: pa.Table, iou_threshold: float = MATCH_IOU) -> dict:
    """compute_annotator_agreement over a round's boxes (BOX_ANNOTATION_SCHEMA)."""
    images = [
        [(row["annotator"], box_set_from_rows(row["boxes"])) for row in rows]
        for rows in _by_record(annotations).values()
    ]
    return compute_annotator_agreement(images, iou_threshold)


def fuse_annotations(
    annotations: pa.Table,
    accuracy: Mapping[str, float] | None = None,
    *,
    min_support: float = MIN_SUPPORT,
    iou_threshold: float = FUSION_IOU,
) -> pa.Table:
    """One row per image (record_id, width, height, boxes as BOXES_TYPE scored by the weighted share of
    annotators who drew the box with its label, annotators) fusing every annotator's boxes
    (BOX_ANNOTATION_SCHEMA) by weighted boxes fusion, keeping boxes of support >= min_support.

    Each annotator is weighted by `accuracy` (e.g. on gold tasks; an empty mapping: equal weights); without
    it (None), by its mean F1 with the other annotators over the whole table, which bench/BOXES.md measured
    about as good as gold weights and better than equal ones (a 1-1 label split then goes to the annotator
    who agrees with the others more).
    """
    if accuracy is None:
        accuracy = compute_box_agreement(annotations, iou_threshold=MATCH_IOU)["per_annotator"]
    out: dict[str, list] = {"record_id": [], "width": [], "height": [], "boxes": [], "annotators": []}
    for record, rows in sorted(_by_record(annotations).items()):
        names = [row["annotator"] for row in rows]
        sets = [box_set_from_rows(row["boxes"]) for row in rows]
        fused = keep_supported(
            fuse_boxes(sets, annotator_weights(names, accuracy), iou_threshold=iou_threshold), min_support
        )
        width, height = rows[0]["width"], rows[0]["height"]
        boxes = build_boxes(xyxy_to_xywh(fused.boxes.xyxy), list(fused.boxes.labels), width, height, fused.boxes.scores)
        for column, value in zip(out, (record, width, height, boxes, names), strict=True):
            out[column].append(value)
    return pa.table(
        {
            "record_id": pa.array(out["record_id"], pa.string()),
            "width": pa.array(out["width"], pa.int32()),
            "height": pa.array(out["height"], pa.int32()),
            "boxes": pa.array(out["boxes"], BOXES_TYPE),
            "annotators": pa.array(out["annotators"], pa.list_(pa.string())),
        }
    )


def find_box_label_errors(annotations: pa.Table, reference: pa.Table) -> pa.Table:
    """BOX_ERROR_SCHEMA flags of every annotator's boxes (BOX_ANNOTATION_SCHEMA) against the reference boxes
    of the same image (a fuse_annotations table, or gold boxes: record_id and boxes). An image the reference
    lacks is not judged."""
    references = dict(zip(reference["record_id"].to_pylist(), reference["boxes"].to_pylist(), strict=True))
    flags = []
    for record, rows in sorted(_by_record(annotations).items()):
        if record not in references:
            continue
        truth = box_set_from_rows(references[record])
        for row in rows:
            for flag in find_box_errors(box_set_from_rows(row["boxes"]), truth):
                flags.append({"record_id": record, "annotator": row["annotator"], **flag})
    return pa.Table.from_pylist(flags, schema=BOX_ERROR_SCHEMA)


def build_box_scorecards(annotations: pa.Table, reference: pa.Table) -> pa.Table:
    """One row per annotator: images and boxes drawn, F1 against the reference boxes of the same images (gold
    boxes for a gold score, a fuse_annotations table for agreement with the consensus; same label at IoU >=
    MATCH_IOU, counted over all its boxes; in [0, 1], low = unreliable, null without a judged image) and its
    flags per reason (BOX_ERROR_REASONS). Images the reference lacks count as drawn but are not judged."""
    references = dict(zip(reference["record_id"].to_pylist(), reference["boxes"].to_pylist(), strict=True))
    per: dict[str, dict] = {}
    for record, rows in _by_record(annotations).items():
        for row in rows:
            entry = per.setdefault(row["annotator"], {"images": 0, "boxes": 0, "matched": 0, "judged": 0})
            entry["images"] += 1
            entry["boxes"] += len(row["boxes"])
            if record in references:
                mine, truth = box_set_from_rows(row["boxes"]), box_set_from_rows(references[record])
                entry["matched"] += len(match_boxes(mine, truth, MATCH_IOU, same_label=True)[0])
                entry["judged"] += len(mine.xyxy) + len(truth.xyxy)
    flags = find_box_label_errors(annotations, reference).to_pylist()
    out = []
    for name in sorted(per):
        entry = per[name]
        reasons = {reason: 0 for reason in BOX_ERROR_REASONS}
        for flag in flags:
            if flag["annotator"] == name:
                reasons[flag["reason"]] += 1
        f1 = 2.0 * entry["matched"] / entry["judged"] if entry["judged"] else None
        out.append({"annotator": name, "images": entry["images"], "boxes": entry["boxes"], "f1": f1, **reasons})
    return pa.Table.from_pylist(out)
