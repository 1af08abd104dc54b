"""Detect rounds as pure table logic: pulled box answers to per-image tables, the round's summary and review, fused
boxes joined onto records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from corpus.boxes import BOX_ANNOTATION_SCHEMA, BOXES_TYPE, box_set_from_rows, majority_box_label
from labeling.box_quality import (
    BOX_ERROR_REASONS,
    build_box_scorecards,
    compute_box_agreement,
    compute_box_f1,
    find_box_label_errors,
    fuse_annotations,
)
from labeling.review import GOLD_MISMATCH, LOW_CONFIDENCE, REVIEW_SET_SCHEMA

# Review reasons of a detect round beside review.py's: an annotator's box the consensus lacks, and so on;
# labeling.box_quality.find_box_errors says what each means.
BOX_REVIEW_REASONS = tuple(f"box_{reason}" for reason in BOX_ERROR_REASONS)
# The first flags kept in a round's summary (the review tab holds them all, as reasons per task).
SUMMARY_FLAGS = 50


def box_annotation_table(
    annotations: pa.Table, sizes: Mapping[str, tuple[int, int]], record_ids: Iterable[str] | None = None
) -> pa.Table:
    """BOX_ANNOTATION_SCHEMA rows from pulled annotations (ANNOTATION_SCHEMA, newest version of each): one per
    image and annotator, that annotator's newest live answer with boxes ([] = "no object"). Deleted, skipped
    and unreadable (null boxes) answers are left out, as are images without a size in `sizes` (record_id ->
    (width, height)) and, with `record_ids`, images outside them."""
    wanted = set(record_ids) if record_ids is not None else None
    newest: dict[tuple[str, str], dict] = {}
    columns = ["record_id", "annotator", "boxes", "deleted", "was_cancelled", "updated_at", "annotation_id"]
    for row in annotations.select(columns).to_pylist():
        record, annotator = row["record_id"], row["annotator"]
        if row["deleted"] or row["was_cancelled"] or row["boxes"] is None or annotator is None:
            continue
        if record not in sizes or (wanted is not None and record not in wanted):
            continue
        key = (record, annotator)
        order = (row["updated_at"], row["annotation_id"])
        if key not in newest or order > (newest[key]["updated_at"], newest[key]["annotation_id"]):
            newest[key] = row
    rows = [
        {"record_id": r, "annotator": a, "width": sizes[r][0], "height": sizes[r][1], "boxes": row["boxes"]}
        for (r, a), row in sorted(newest.items())
    ]
    return pa.Table.from_pylist(rows, schema=BOX_ANNOTATION_SCHEMA)


def image_sizes(records: pa.Table) -> dict[str, tuple[int, int]]:
    """record_id -> (width, height) of the image records that have both."""
    rows = records.select(["record_id", "width", "height"]).to_pylist()
    return {r["record_id"]: (int(r["width"]), int(r["height"])) for r in rows if r["width"] and r["height"]}


def gold_table(gold: Mapping[str, Sequence[dict[str, Any]]], record_ids: Iterable[str] | None = None) -> pa.Table:
    """(record_id, boxes) of the gold images (corpus.pool.read_box_gold), of `record_ids` when given: the
    reference box_quality's scorecards and flags take."""
    ids = sorted(gold if record_ids is None else set(record_ids) & set(gold))
    boxes = [[{k: b[k] for k in ("label", "x", "y", "w", "h")} for b in gold[rid]] for rid in ids]
    box_type = pa.list_(pa.struct([("label", pa.string())] + [(k, pa.float64()) for k in "xywh"]))
    return pa.table({"record_id": pa.array(ids, pa.string()), "boxes": pa.array(boxes, box_type)})


def gold_box_accuracy(boxes: pa.Table, gold: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, float]:
    """annotator -> F1 in [0, 1] (low = unreliable) of their boxes on gold images (BOX_ANNOTATION_SCHEMA rows),
    for annotators who drew at least one gold image: the fusion weights of their boxes."""
    cards = build_box_scorecards(boxes, gold_table(gold)).to_pylist() if boxes.num_rows else []
    return {card["annotator"]: card["f1"] for card in cards if card["f1"] is not None}


def fuse_round(boxes: pa.Table, gold: Mapping[str, Sequence[dict[str, Any]]]) -> pa.Table:
    """box_quality.fuse_annotations of a round's boxes, annotators weighted by their gold F1 where any gold
    image was drawn, else by their agreement with the others (fuse_annotations' default)."""
    accuracy = gold_box_accuracy(boxes, gold)
    return fuse_annotations(boxes, accuracy or None)


def _scorecards(boxes: pa.Table, consensus: pa.Table, gold: Mapping[str, Sequence[dict[str, Any]]]) -> list[dict]:
    """Per annotator: images, boxes, gold images (`gold_items`) and F1 on them (`gold_f1`), F1 with the
    consensus (`consensus_f1`) and the flags against the consensus per reason."""
    if not boxes.num_rows:
        return []
    on_gold = build_box_scorecards(boxes, gold_table(gold)).to_pylist()
    gold_ids = set(gold)
    gold_items: dict[str, int] = {}
    for record, name in zip(boxes["record_id"].to_pylist(), boxes["annotator"].to_pylist(), strict=True):
        gold_items[name] = gold_items.get(name, 0) + (record in gold_ids)
    by_name = {card["annotator"]: card for card in on_gold}
    cards = []
    for card in build_box_scorecards(boxes, consensus).to_pylist():
        name = card["annotator"]
        cards.append(
            {
                "annotator": name,
                "images": card["images"],
                "boxes": card["boxes"],
                "gold_items": gold_items.get(name, 0),
                "gold_f1": by_name[name]["f1"],
                "consensus_f1": card["f1"],
                **{reason: card[reason] for reason in BOX_ERROR_REASONS},
            }
        )
    return cards


def summarize_box_round(
    boxes: pa.Table, record_ids: Iterable[str], gold: Mapping[str, Sequence[dict[str, Any]]]
) -> dict[str, Any]:
    """The summary of one detect round from its boxes (box_annotation_table, all images): as
    labeling.summary.summarize_round's, for boxes.

    Returns {"annotations", "labeled_records", "new_labels" (labeled images that are not gold), "agreement"
    ({"box_f1": mean IoU-matched F1 over annotator pairs of images drawn twice or more, None without one;
    "pairs", "per_annotator"}), "gold_box_f1" (every gold answer's boxes against the gold boxes, pooled over
    annotators; None without one), "scorecards" (_scorecards), "flags" (counts per reason against the
    consensus) and "flag_examples" (the first SUMMARY_FLAGS)}.
    """
    wanted = pa.array(sorted(set(record_ids)), type=pa.string())
    this_round = boxes.filter(pc.is_in(boxes.column("record_id"), wanted))
    consensus = fuse_round(this_round, gold)
    agreement = compute_box_agreement(this_round)
    flags = find_box_label_errors(this_round, consensus).to_pylist()
    labeled = set(this_round.column("record_id").to_pylist())
    judged = [
        compute_box_f1(box_set_from_rows(row["boxes"]), box_set_from_rows(gold[row["record_id"]]))
        for row in this_round.select(["record_id", "boxes"]).to_pylist()
        if row["record_id"] in gold
    ]
    return {
        "annotations": this_round.num_rows,
        "labeled_records": len(labeled),
        "new_labels": len(labeled - set(gold)),
        "agreement": {
            "box_f1": agreement["f1"],
            "pairs": agreement["pairs"],
            "per_annotator": agreement["per_annotator"],
        },
        "gold_box_f1": float(np.mean(judged)) if judged else None,
        "gold_answers": len(judged),
        "scorecards": _scorecards(this_round, consensus, gold),
        "flags": {reason: sum(1 for f in flags if f["reason"] == reason) for reason in BOX_ERROR_REASONS},
        "flag_examples": flags[:SUMMARY_FLAGS],
    }


def _image_confidence(boxes: Sequence[dict[str, Any]]) -> float:
    """An image's label confidence in [0, 1] (low = doubtful): its least supported fused box's score; 1 for an
    image whose fused boxes are none (no drawn box reached the support a release keeps)."""
    return min((float(b["score"]) for b in boxes if b.get("score") is not None), default=1.0)


def build_box_review_set(
    boxes: pa.Table,
    consensus: pa.Table,
    gold: Mapping[str, Sequence[dict[str, Any]]],
    *,
    threshold: float,
) -> pa.Table:
    """Images of a detect round to review (REVIEW_SET_SCHEMA: label = the consensus' majority box label,
    label_confidence = _image_confidence), each with all its reasons: gold_mismatch (the consensus misses
    the gold boxes: F1 < 1), low_confidence (a fused box below `threshold`), and box_<reason> for every flag
    of an annotator's boxes against the consensus (BOX_REVIEW_REASONS). Least confident first."""
    fused = {row["record_id"]: row["boxes"] for row in consensus.select(["record_id", "boxes"]).to_pylist()}
    reasons: dict[str, set[str]] = {}
    for record, drawn in fused.items():
        if record in gold and compute_box_f1(box_set_from_rows(drawn), box_set_from_rows(gold[record])) < 1.0:
            reasons.setdefault(record, set()).add(GOLD_MISMATCH)
        if _image_confidence(drawn) < threshold:
            reasons.setdefault(record, set()).add(LOW_CONFIDENCE)
    for flag in find_box_label_errors(boxes, consensus).to_pylist():
        reasons.setdefault(flag["record_id"], set()).add(f"box_{flag['reason']}")
    order = (GOLD_MISMATCH, *BOX_REVIEW_REASONS, LOW_CONFIDENCE)
    rows = [
        {
            "record_id": record,
            "label": majority_box_label(fused.get(record) or []),
            "label_confidence": _image_confidence(fused.get(record) or []),
            "reasons": [r for r in order if r in found],
        }
        for record, found in reasons.items()
    ]
    rows.sort(key=lambda r: (r["label_confidence"], r["record_id"]))
    return pa.Table.from_pylist(rows, schema=REVIEW_SET_SCHEMA)


def attach_boxes(records: pa.Table, consensus: pa.Table, trusted_origins: Sequence[str] = ()) -> pa.Table:
    """The image records that have fused boxes (`consensus`, box_quality.fuse_annotations' table), with
    `boxes` set to them (each box scored by the weighted share of annotators who drew it with its label),
    `label` to their majority box label (corpus.boxes.majority_box_label: the key splits stratify on, not a
    class of its own), `label_source` human (one annotator) or consensus, `label_confidence`
    (_image_confidence) and `annotators`. A record imported with boxes from one of `trusted_origins` (its
    label_source, e.g. `imported:<source>`) keeps those boxes as they are, confidence 1, as a trusted
    import's label does in a classify release."""
    fused = {row["record_id"]: row for row in consensus.select(["record_id", "boxes", "annotators"]).to_pylist()}
    trusted = set(trusted_origins)
    own = records.select(["record_id", "boxes", "label_source"]).to_pylist()
    imported = {r["record_id"]: r for r in own if r["label_source"] in trusted and r["boxes"] is not None}
    keep = [row["record_id"] in fused or row["record_id"] in imported for row in own]
    labeled = records.filter(pa.array(keep, type=pa.bool_()))
    rows = []
    for rid in labeled.column("record_id").to_pylist():
        if rid in imported:
            origin = imported[rid]["label_source"]
            rows.append({"boxes": imported[rid]["boxes"], "source": origin, "confidence": 1.0, "annotators": [origin]})
        else:
            row = fused[rid]
            source = "consensus" if len(row["annotators"]) > 1 else "human"
            rows.append({**row, "source": source, "confidence": _image_confidence(row["boxes"])})
    columns = {
        "boxes": pa.array([r["boxes"] for r in rows], type=BOXES_TYPE),
        "label": pa.array([majority_box_label(r["boxes"]) for r in rows], type=pa.string()),
        "label_source": pa.array([r["source"] for r in rows], pa.string()),
        "label_confidence": pa.array([r["confidence"] for r in rows], type=pa.float32()),
        "annotators": pa.array([r["annotators"] for r in rows], type=pa.list_(pa.string())),
    }
    for name, values in columns.items():
        index = labeled.schema.get_field_index(name)
        labeled = labeled.set_column(index, name, values) if index >= 0 else labeled.append_column(name, values)
    return labeled
