"""Detect rounds as tables: pulled rectangles to boxes, the round's box summary, review set and gate, fused boxes
joined onto records; planted misses, extras and disagreements are found with their reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from corpus.boxes import BOXES_TYPE, NO_OBJECT_LABEL, build_boxes, majority_box_label
from corpus.schema import ANNOTATION_SCHEMA, conform
from labeling.box_results import boxes_to_studio_result
from labeling.box_rounds import (
    attach_boxes,
    box_annotation_table,
    build_box_review_set,
    fuse_round,
    gold_box_accuracy,
    image_sizes,
    summarize_box_round,
)
from labeling.gate import QualityGate, check_box_quality_gate
from labeling.sync import extract_boxes

SIZE = (100, 80)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _boxes(*drawn: tuple[str, float, float, float, float]) -> list[dict]:
    xywh = np.array([d[1:] for d in drawn], dtype=np.float64).reshape(-1, 4)
    return build_boxes(xywh, [d[0] for d in drawn], *SIZE)


TRUTH = {
    "img-a": _boxes(("cat", 10, 10, 30, 20), ("dog", 50, 40, 30, 30)),
    "img-b": _boxes(("dog", 5, 5, 40, 40)),
    "img-c": [],
}


def _annotations(answers: list[tuple[str, str, list[dict] | None]], **extra) -> pa.Table:
    rows = []
    for i, (record, annotator, boxes) in enumerate(answers):
        rows.append(
            {
                "annotation_id": i + 1,
                "task_id": 100 + i,
                "project_id": 1,
                "record_id": record,
                "label": None,
                "boxes": boxes,
                "annotator": annotator,
                "created_at": T0,
                "updated_at": T0 + timedelta(seconds=i),
                "lead_time": 1.0,
                "was_cancelled": extra.get("cancelled", {}).get(i, False),
                "deleted": extra.get("deleted", {}).get(i, False),
                "pulled_at": T0,
            }
        )
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)


def _three_annotators(miss_for: str | None = None) -> pa.Table:
    """Everyone draws the truth; `miss_for` leaves out img-a's dog."""
    answers = []
    for record, truth in TRUTH.items():
        for name in ("ann", "bob", "cid"):
            drawn = [b for b in truth if not (name == miss_for and record == "img-a" and b["label"] == "dog")]
            answers.append((record, name, drawn))
    return _annotations(answers)


SIZES = {record: SIZE for record in TRUTH}


def test_rectangles_become_boxes_and_a_detect_answer_without_any_is_no_object() -> None:
    result = boxes_to_studio_result(TRUTH["img-a"], *SIZE)
    drawn = extract_boxes(result, detect=True)
    assert [b["label"] for b in drawn] == ["cat", "dog"]
    assert drawn[0]["x"] == pytest.approx(10) and drawn[0]["w_norm"] == pytest.approx(0.3)
    assert extract_boxes([], detect=True) == []
    assert extract_boxes([], detect=False) is None  # a classify answer has no boxes at all
    choice = [{"type": "choices", "value": {"choices": ["cat"]}}]
    assert extract_boxes(choice, detect=False) is None


def test_a_rectangle_without_an_image_size_is_stored_without_boxes_not_as_no_object(caplog) -> None:
    result = boxes_to_studio_result(TRUTH["img-b"], *SIZE)
    for item in result:
        item.pop("original_width")
        item.pop("original_height")
    assert extract_boxes(result, detect=True, annotation_id=7) is None
    assert "annotation 7" in caplog.text


def test_the_box_table_keeps_each_annotators_newest_live_answer() -> None:
    answers = [
        ("img-a", "ann", TRUTH["img-b"]),  # replaced by the next, newer answer
        ("img-a", "ann", TRUTH["img-a"]),
        ("img-b", "ann", TRUTH["img-b"]),  # deleted
        ("img-b", "bob", None),  # skipped
        ("img-c", "bob", []),  # no object
        ("elsewhere", "bob", []),  # no size known
    ]
    table = box_annotation_table(_annotations(answers, deleted={2: True}, cancelled={3: True}), SIZES)
    rows = table.to_pylist()
    assert [(r["record_id"], r["annotator"]) for r in rows] == [("img-a", "ann"), ("img-c", "bob")]
    assert len(rows[0]["boxes"]) == 2 and rows[1]["boxes"] == [] and rows[0]["width"] == 100
    only_c = box_annotation_table(_annotations(answers), SIZES, record_ids=["img-c"])
    assert only_c.column("record_id").to_pylist() == ["img-c"]


def test_a_planted_missed_box_is_flagged_and_scored_against_the_consensus_and_gold() -> None:
    boxes = box_annotation_table(_three_annotators(miss_for="cid"), SIZES)
    gold = {"img-b": TRUTH["img-b"], "img-a": TRUTH["img-a"]}
    summary = summarize_box_round(boxes, list(TRUTH), gold)
    assert summary["annotations"] == 9 and summary["labeled_records"] == 3 and summary["new_labels"] == 1
    assert summary["flags"] == {"missing": 1, "extra": 0, "misplaced": 0, "wrong_label": 0}
    (flag,) = summary["flag_examples"]
    assert flag["record_id"] == "img-a" and flag["annotator"] == "cid" and flag["suggested_label"] == "dog"
    cards = {c["annotator"]: c for c in summary["scorecards"]}
    assert cards["cid"]["missing"] == 1 and cards["ann"]["missing"] == 0
    assert cards["ann"]["gold_f1"] == 1.0 and cards["cid"]["gold_f1"] == pytest.approx(2 * 2 / 5)
    assert cards["cid"]["gold_items"] == 2
    # pairs: img-a's two pairs with cid score 2/3, the rest 1
    assert summary["agreement"]["box_f1"] == pytest.approx((7 + 2 * 2 / 3) / 9)
    assert summary["gold_box_f1"] == pytest.approx((5 + 2 / 3) / 6)  # six gold answers, one of them short a box


def test_gold_weights_the_fusion_toward_the_annotator_who_draws_the_gold_right() -> None:
    wrong = _boxes(("cat", 5, 5, 40, 40))  # img-b's dog drawn as a cat
    answers = [("img-b", "ann", TRUTH["img-b"]), ("img-b", "bob", wrong)]
    answers += [("img-a", "ann", TRUTH["img-a"]), ("img-a", "bob", _boxes(("dog", 50, 40, 30, 30)))]
    boxes = box_annotation_table(_annotations(answers), SIZES)
    gold = {"img-a": TRUTH["img-a"]}
    assert gold_box_accuracy(boxes, gold) == {"ann": 1.0, "bob": pytest.approx(2 / 3)}
    fused = {r["record_id"]: r["boxes"] for r in fuse_round(boxes, gold).to_pylist()}
    assert [b["label"] for b in fused["img-b"]] == ["dog"]  # the 1-1 split goes to the gold-accurate annotator


def test_the_review_set_names_every_reason_of_an_image() -> None:
    answers = [(r, n, TRUTH[r]) for r in TRUTH for n in ("ann", "bob")]
    answers.append(("img-c", "cid", _boxes(("cat", 60, 10, 20, 20))))  # an extra box nobody else drew
    boxes = box_annotation_table(_annotations(answers), SIZES)
    gold = {"img-b": _boxes(("dog", 5, 5, 40, 40), ("cat", 60, 50, 20, 20))}  # gold has a box nobody drew
    review = build_box_review_set(boxes, fuse_round(boxes, gold), gold, threshold=0.8)
    by_id = {row["record_id"]: row for row in review.to_pylist()}
    assert by_id["img-b"]["reasons"] == ["gold_mismatch"]
    assert "box_extra" in by_id["img-c"]["reasons"]
    assert "img-a" not in by_id


def test_fused_boxes_land_on_the_records_with_their_stratification_label_and_source() -> None:
    records = conform(
        pa.table({"record_id": ["img-a", "img-b", "img-c", "unlabeled"], "width": [100] * 4, "height": [80] * 4})
    )
    answers = [(r, n, TRUTH[r]) for r in ("img-a", "img-c") for n in ("ann", "bob")] + [
        ("img-b", "ann", TRUTH["img-b"])
    ]
    boxes = box_annotation_table(_annotations(answers), image_sizes(records))
    labeled = {r["record_id"]: r for r in attach_boxes(records, fuse_round(boxes, {})).to_pylist()}
    assert set(labeled) == {"img-a", "img-b", "img-c"}
    assert labeled["img-a"]["label_source"] == "consensus" and labeled["img-b"]["label_source"] == "human"
    assert [b["label"] for b in labeled["img-a"]["boxes"]] == ["cat", "dog"]
    assert labeled["img-a"]["boxes"][0]["x"] == pytest.approx(10) and labeled["img-a"]["label_confidence"] == 1.0
    assert labeled["img-a"]["label"] == "cat"  # one cat, one dog: the tie goes to the first name
    assert labeled["img-c"]["boxes"] == [] and labeled["img-c"]["label"] == NO_OBJECT_LABEL
    assert labeled["img-c"]["annotators"] == ["ann", "bob"]


def test_the_majority_box_label_breaks_ties_by_name() -> None:
    assert majority_box_label(_boxes(("dog", 1, 1, 5, 5), ("dog", 9, 9, 5, 5), ("cat", 20, 20, 5, 5))) == "dog"
    assert majority_box_label(_boxes(("dog", 1, 1, 5, 5), ("cat", 20, 20, 5, 5))) == "cat"
    assert majority_box_label([]) == NO_OBJECT_LABEL


def test_the_box_gate_judges_box_f1_gold_box_f1_and_new_images() -> None:
    gate = QualityGate()
    passed = check_box_quality_gate(agreement={"box_f1": 0.8}, gold_box_f1=0.9, new_labels=30, gate=gate)
    assert passed.passed and [c.name for c in passed.criteria] == ["box_f1", "gold_box_f1", "new_labels"]
    failed = check_box_quality_gate(agreement={"box_f1": 0.55}, gold_box_f1=None, new_labels=30, gate=gate)
    assert not failed.passed
    assert failed.reasons[0] == "box_f1 0.55 is below 0.7"
    assert "no gold image was drawn" in failed.reasons[1]
    off = QualityGate(min_box_f1=None, min_gold_box_f1=None, min_new_labels=1)
    assert check_box_quality_gate(agreement={}, gold_box_f1=None, new_labels=1, gate=off).passed


def test_a_detect_answer_counts_toward_the_rounds_progress_even_when_it_has_no_object() -> None:
    from labeling.round_state import measure_progress, open_round, start_labeling

    opened = open_round(
        "d", 1, 1, pool="p", labels=["cat", "dog"], strategy="diversity", model_version=None,
        record_ids=["img-a", "img-c"], gold=[], params={}, now=T0, deadline_hours=72, task="detect",
    )  # fmt: skip
    round_ = start_labeling(opened, {"img-a": 100, "img-c": 101}, {"img-a": 1, "img-c": 1}, T0)
    drawn = _annotations([("img-a", "ann", TRUTH["img-a"]), ("img-c", "ann", [])])
    progress = measure_progress(round_, drawn, T0 + timedelta(hours=1))
    assert progress["done"] == progress["needed"] == 2 and progress["complete"]
    unreadable = _annotations([("img-a", "ann", TRUTH["img-a"]), ("img-c", "ann", None)])
    assert measure_progress(round_, unreadable, T0 + timedelta(hours=1))["done"] == 1


def test_boxes_imported_from_a_trusted_origin_are_released_as_they_are() -> None:
    records = conform(
        pa.table(
            {
                "record_id": ["img-a", "img-b", "untrusted"],
                "width": [100] * 3,
                "height": [80] * 3,
                "boxes": pa.array([None, TRUTH["img-b"], TRUTH["img-b"]], type=BOXES_TYPE),
                "label_source": ["imported:team", "imported:team", "imported:web"],
            }
        )
    )
    answers = [("img-a", "ann", TRUTH["img-a"]), ("img-b", "ann", [])]
    boxes = box_annotation_table(_annotations(answers), image_sizes(records))
    labeled = {r["record_id"]: r for r in attach_boxes(records, fuse_round(boxes, {}), ["imported:team"]).to_pylist()}
    assert set(labeled) == {"img-a", "img-b"}  # the untrusted import is not released without a human answer
    assert labeled["img-b"]["label_source"] == "imported:team" and labeled["img-b"]["label"] == "dog"
    assert len(labeled["img-b"]["boxes"]) == 1 and labeled["img-b"]["annotators"] == ["imported:team"]
    assert labeled["img-a"]["label_source"] == "human"  # an import without boxes: the drawn ones count
