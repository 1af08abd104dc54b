"""The detect task's steps in the shared round and release flows: box review, the box gate, fused boxes released."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from corpus.pool import read_box_gold
from corpus.store import DataRoot
from labeling.box_quality import compute_box_agreement
from labeling.box_rounds import (
    attach_boxes,
    box_annotation_table,
    build_box_review_set,
    fuse_round,
    image_sizes,
    summarize_box_round,
)
from labeling.gate import QualityGate, check_box_quality_gate
from labeling.round_state import LabelRound
from labeling.sync import read_annotations


def review_boxes(root: DataRoot, round_: LabelRound) -> tuple[dict[str, Any], pa.Table]:
    """(the round's summary: labeling.box_rounds.summarize_box_round, the review set: images with box flags
    against the consensus, missed gold boxes or doubtful fused boxes, REVIEW_SET_SCHEMA)."""
    params = round_.params
    gold = read_box_gold(root, params.get("gold_path"))
    sizes = image_sizes(root.read_table(round_.pool))
    boxes = box_annotation_table(read_annotations(root), sizes, round_.record_ids)
    summary = summarize_box_round(boxes, round_.record_ids, gold)
    threshold = params.get("review_threshold", 0.8)
    return summary, build_box_review_set(boxes, fuse_round(boxes, gold), gold, threshold=threshold)


def judge_boxes(round_: LabelRound, summary: dict[str, Any]) -> dict[str, Any]:
    """A detect round's gate (labeling.gate.check_box_quality_gate) on its summary, as a dict."""
    return check_box_quality_gate(
        agreement=summary["agreement"],
        gold_box_f1=summary.get("gold_box_f1"),
        new_labels=summary["new_labels"],
        gate=QualityGate.model_validate(round_.params.get("gate") or {}),
    ).to_dict()


def label_box_records(
    root: DataRoot, records: pa.Table, gold_path: str | None, trusted_origins: Sequence[str] = ()
) -> tuple[pa.Table, dict[str, Any]]:
    """(the pool records anyone drew boxes on, with the fused boxes of every annotation pulled so far in
    `boxes` (labeling.box_rounds.attach_boxes; annotators weighted by gold F1 where known), and those imported
    with boxes from a trusted origin; the box agreement over the drawn ones: what a detect release carries)."""
    boxes = box_annotation_table(read_annotations(root), image_sizes(records))
    consensus = fuse_round(boxes, read_box_gold(root, gold_path))
    agreement = compute_box_agreement(boxes)
    labeled = attach_boxes(records, consensus, trusted_origins)
    return labeled, {"box_f1": agreement["f1"], "pairs": agreement["pairs"]}
