"""Boxes of several annotators: Hungarian matching, weighted boxes fusion with a label vote, agreement, error flags."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpus.boxes import BOX_ANNOTATION_SCHEMA, build_boxes, make_box_set, xyxy_to_xywh
from labeling.box_fusion import fuse_boxes, keep_supported, match_boxes
from labeling.box_quality import (
    build_box_scorecards,
    compute_box_agreement,
    compute_box_f1,
    find_box_errors,
    find_box_label_errors,
    fuse_annotations,
)

# Three annotators on one 100x100 image with two objects: a cat at 0..10 and a dog at 20..40.
# "b" labels the dog a cat; "c" misses the dog and draws an extra box at 50..60.
DRAWN = {
    "a": ([[0, 0, 10, 10], [20, 20, 40, 40]], ["cat", "dog"]),
    "b": ([[1, 1, 11, 11], [20, 20, 40, 40]], ["cat", "cat"]),
    "c": ([[0, 0, 10, 10], [50, 50, 60, 60]], ["cat", "dog"]),
}
SETS = [make_box_set(xyxy, labels) for xyxy, labels in DRAWN.values()]


def test_hungarian_matching_finds_the_pairing_a_greedy_one_misses() -> None:
    # Greedy takes a1-b1 (IoU 1) first and leaves a2 with b2 (IoU 1/3 < 0.5): one match. Both pairs at
    # IoU >= 0.5 exist: a1-b2 (7/13) and a2-b1 (8/12).
    first = make_box_set([[0, 0, 10, 10], [2, 0, 12, 10]], ["x", "x"])
    second = make_box_set([[0, 0, 10, 10], [-3, 0, 7, 10]], ["x", "x"])
    pairs, ious = match_boxes(first, second, 0.5)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0)]
    np.testing.assert_allclose(sorted(ious), [7 / 13, 8 / 12])
    assert len(match_boxes(first, make_box_set([[0, 0, 10, 10]], ["y"]), 0.5, same_label=True)[0]) == 0
    assert len(match_boxes(first, make_box_set([[50, 50, 60, 60]], ["x"]), 0.0)[0]) == 0


def test_fusion_averages_matched_boxes_and_votes_their_label() -> None:
    fused = fuse_boxes(SETS)
    np.testing.assert_allclose(fused.boxes.xyxy, [[1 / 3, 1 / 3, 31 / 3, 31 / 3], [20, 20, 40, 40], [50, 50, 60, 60]])
    assert list(fused.boxes.labels) == ["cat", "dog", "dog"]  # the dog's tie goes to the first annotator
    np.testing.assert_allclose(fused.support, [1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(fused.label_share, [1, 0.5, 1])
    np.testing.assert_allclose(fused.boxes.scores, [1, 1 / 3, 1 / 3])  # drew it with this label
    assert fused.members.tolist() == [[0, 0, 0], [1, 1, -1], [-1, -1, 1]]
    kept = keep_supported(fused, 0.5)
    assert list(kept.boxes.labels) == ["cat", "dog"]


def test_a_heavier_annotator_pulls_the_corners_and_wins_the_vote() -> None:
    fused = fuse_boxes(SETS, weights=[1.0, 2.0, 1.0])
    assert fused.boxes.xyxy[0].tolist() == pytest.approx([0.5, 0.5, 10.5, 10.5])  # (0 + 2 x 1 + 0) / 4
    assert fused.boxes.labels[1] == "cat"
    np.testing.assert_allclose(fused.support, [1, 3 / 4, 1 / 4])
    np.testing.assert_allclose(fused.label_share, [1, 2 / 3, 1])
    with pytest.raises(ValueError, match="one positive weight per annotator"):
        fuse_boxes(SETS, weights=[1.0, 0.0, 1.0])


def test_f1_counts_matches_of_the_same_label() -> None:
    a, b, c = SETS
    assert compute_box_f1(a, c) == 0.5  # the cats match; the dogs are 30 px apart
    assert compute_box_f1(a, b) == 0.5  # the dog drawn as a cat does not count
    assert compute_box_f1(a, b, same_label=False) == 1.0
    assert compute_box_f1(make_box_set([], []), make_box_set([], [])) == 1.0


def test_error_flags_name_missing_extra_misplaced_and_wrong_label_boxes() -> None:
    reference = keep_supported(fuse_boxes(SETS), 0.5).boxes
    assert find_box_errors(SETS[0], reference) == []
    [wrong] = find_box_errors(SETS[1], reference)
    assert (wrong["reason"], wrong["label"], wrong["suggested_label"], wrong["iou"]) == (
        "wrong_label",
        "cat",
        "dog",
        1.0,
    )
    reasons = [(f["reason"], f["label"], f["suggested_label"]) for f in find_box_errors(SETS[2], reference)]
    assert reasons == [("missing", None, "dog"), ("extra", "dog", None)]
    # Shifted by half its size against the fused cat (1/3..31/3): overlap 16/3 per side, IoU (16/3)^2 / (200 -
    # (16/3)^2), paired with the cat but misplaced.
    [shifted] = find_box_errors(make_box_set([[5, 5, 15, 15], [20, 20, 40, 40]], ["cat", "dog"]), reference)
    assert shifted["reason"] == "misplaced" and shifted["iou"] == pytest.approx((16 / 3) ** 2 / (200 - (16 / 3) ** 2))


def _annotations() -> pa.Table:
    rows = []
    for record in ("r1", "r2"):
        for name, (xyxy, labels) in DRAWN.items():
            boxes = build_boxes(xyxy_to_xywh(np.array(xyxy)), labels, 100, 100)
            rows.append({"record_id": record, "annotator": name, "width": 100, "height": 100, "boxes": boxes})
    rows.append({"record_id": "r3", "annotator": "a", "width": 100, "height": 100, "boxes": []})
    return pa.Table.from_pylist(rows[::-1], schema=BOX_ANNOTATION_SCHEMA)  # pulled in any order


def test_a_rounds_boxes_fuse_agree_and_flag_per_image() -> None:
    annotations = _annotations()
    fused = fuse_annotations(annotations)
    assert fused["record_id"].to_pylist() == ["r1", "r2", "r3"]
    r1 = fused["boxes"].to_pylist()[0]
    assert [(b["label"], round(b["score"], 3)) for b in r1] == [("cat", 1.0), ("dog", 0.333)]
    assert r1[0]["x_norm"] == pytest.approx(1 / 300) and fused["boxes"].to_pylist()[2] == []
    agreement = compute_box_agreement(annotations)
    # Per image: a-b 0.5, a-c 0.5, b-c 0.5 (the cats only); r3 has one annotator and is not a pair.
    assert agreement == {"f1": 0.5, "pairs": 6, "per_annotator": {"a": 0.5, "b": 0.5, "c": 0.5}}
    flags = find_box_label_errors(annotations, fused)
    assert flags.column_names == ["record_id", "annotator", "reason", "label", "suggested_label", "iou", "xyxy"]
    summary = sorted((f["record_id"], f["annotator"], f["reason"]) for f in flags.to_pylist())
    assert summary == [
        ("r1", "b", "wrong_label"),
        ("r1", "c", "extra"),
        ("r1", "c", "missing"),
        ("r2", "b", "wrong_label"),
        ("r2", "c", "extra"),
        ("r2", "c", "missing"),
    ]
    weighted = fuse_annotations(annotations, {"a": 0.5, "b": 0.9, "c": 0.5})
    assert [b["label"] for b in weighted["boxes"].to_pylist()[0]] == ["cat", "cat"]


def test_without_gold_a_split_vote_goes_to_the_annotator_who_agrees_with_the_others() -> None:
    def row(record: str, name: str, labels: list[str]) -> dict:
        boxes = build_boxes(xyxy_to_xywh(np.array([[0, 0, 10, 10], [20, 20, 40, 40]][: len(labels)])), labels, 100, 100)
        return {"record_id": record, "annotator": name, "width": 100, "height": 100, "boxes": boxes}

    # "ann" labels the dog a cat on r1 and r2, where "bob" and "cy" agree; on r3 only ann and bob drew it.
    rows = [row(r, "ann", ["cat", "cat"]) for r in ("r1", "r2")]
    rows += [row(r, name, ["cat", "dog"]) for r in ("r1", "r2") for name in ("bob", "cy")]
    rows += [row("r3", "ann", ["cat"]), row("r3", "bob", ["dog"])]
    annotations = pa.Table.from_pylist(rows, schema=BOX_ANNOTATION_SCHEMA)
    agreement = compute_box_agreement(annotations)["per_annotator"]
    assert agreement["ann"] < agreement["bob"]
    fused = {r["record_id"]: [b["label"] for b in r["boxes"]] for r in fuse_annotations(annotations).to_pylist()}
    equal = {r["record_id"]: [b["label"] for b in r["boxes"]] for r in fuse_annotations(annotations, {}).to_pylist()}
    assert fused["r3"] == ["dog"] and equal["r3"] == ["cat"]  # equal weights: the tie goes to the first name


def test_scorecards_count_each_annotators_boxes_f1_and_flags() -> None:
    annotations = _annotations()
    cards = {
        row["annotator"]: row for row in build_box_scorecards(annotations, fuse_annotations(annotations)).to_pylist()
    }
    # a drew both fused boxes right: F1 1 over r1, r2 (and r3, empty on both sides). c: 1 match of 2 + 2 boxes.
    assert cards["a"] == {"annotator": "a", "images": 3, "boxes": 4, "f1": 1.0, "missing": 0, "extra": 0,
                          "misplaced": 0, "wrong_label": 0}  # fmt: skip
    assert cards["c"]["f1"] == 0.5 and (cards["c"]["missing"], cards["c"]["extra"]) == (2, 2)
    assert cards["b"]["f1"] == 0.5 and cards["b"]["wrong_label"] == 2
