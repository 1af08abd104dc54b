"""Selection for detection: image-level uncertainty from box scores by hand, uncertain images picked first and
spread out or (the default) ranked with near-duplicates skipped, plan_round's detect branch; pre-annotations as
RectangleLabels with score and model_version."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from corpus.boxes import BOXES_TYPE, build_boxes
from corpus.schema import PREDICTION_SCHEMA
from labeling.box_predictions import PREANNOTATION_MIN_SCORE, build_box_predictions
from labeling.box_selection import DETECT_STRATEGIES, get_box_uncertainty_scores, select_detection_batch
from labeling.rounds import plan_next_batch
from labeling.studio_tasks import build_tasks


def test_image_uncertainty_is_max_mean_or_sum_of_one_minus_the_boxes_margin():
    scores = [[0.9, 0.5], [0.2], [], [0.99, 0.01, 0.6]]
    # per box 1 - |2s - 1|: 0.2, 1.0 | 0.4 | - | 0.02, 0.02, 0.8
    np.testing.assert_allclose(get_box_uncertainty_scores(scores), [1.0, 0.4, 0.0, 0.8])
    np.testing.assert_allclose(get_box_uncertainty_scores(scores, "mean"), [0.6, 0.4, 0.0, 0.28])
    np.testing.assert_allclose(get_box_uncertainty_scores(scores, "sum"), [1.0, 0.4 / 1.2, 0.0, 0.84 / 1.2])
    with pytest.raises(ValueError, match="image 1: detection scores must be in"):
        get_box_uncertainty_scores([[0.5], [1.5]])
    with pytest.raises(ValueError, match="unknown box uncertainty method 'median'"):
        get_box_uncertainty_scores(scores, "median")


def test_hybrid_takes_the_uncertain_images_and_spreads_them_over_the_embedding():
    # Six uncertain images in two tight groups (3 + 3), four sure ones; budget 2.
    uncertainty = np.array([0.9, 0.95, 0.92, 0.8, 0.85, 0.82, 0.1, 0.0, 0.05, 0.2])
    embeddings = np.array([[0, 0], [0, 0.1], [0.1, 0], [5, 5], [5, 5.1], [5.1, 5], [9, 0], [0, 9], [9, 9], [2, 2]])
    picks, priorities = select_detection_batch("hybrid", 2, uncertainty, embeddings=embeddings)
    assert picks[0] == 1 and picks[1] in (3, 4, 5)  # the most uncertain, then the far group
    np.testing.assert_allclose(priorities, uncertainty[picks])
    ranked, _ = select_detection_batch("margin", 3, uncertainty)
    assert ranked.tolist() == [1, 2, 0]
    # Around an already labeled image in the second group, hybrid starts in the first.
    picks, _ = select_detection_batch("hybrid", 1, uncertainty, embeddings=embeddings, labeled_embeddings=[[5, 5]])
    assert picks.tolist() in ([0], [1], [2])
    with pytest.raises(ValueError, match="strategy 'entropy' has no detection meaning"):
        select_detection_batch("entropy", 1, uncertainty, embeddings=embeddings)


def _boxes(scores: list[float], labels: list[str] | None = None) -> list[dict]:
    xywh = np.array([[4.0 + 10 * i, 8.0, 8.0, 6.0] for i in range(len(scores))])
    return build_boxes(xywh, labels or ["disc"] * len(scores), 64, 32, scores=scores)


# Three near-identical copies of one very uncertain image, two distinct uncertain images, and an outlier the
# model is fairly sure about (far from everything in embedding space); budget 3.
COPIES_UNCERTAINTY = np.array([1.0, 0.99, 0.98, 0.9, 0.85, 0.3])
COPIES_EMBEDDINGS = np.array([[0, 0], [0, 0.001], [0.001, 0], [5, 0], [0, 5], [100, 100]])


def test_distinct_ranks_by_uncertainty_and_skips_near_duplicates():
    picks, priorities = select_detection_batch("distinct", 3, COPIES_UNCERTAINTY, embeddings=COPIES_EMBEDDINGS)
    assert picks.tolist() == [0, 3, 4]  # one copy, then the next most uncertain distinct images
    np.testing.assert_allclose(priorities, COPIES_UNCERTAINTY[picks])
    # What it replaces: uncertainty alone spends the batch on the copies, k-center on the sure outlier.
    ranked, _ = select_detection_batch("margin", 3, COPIES_UNCERTAINTY)
    assert ranked.tolist() == [0, 1, 2]
    spread, _ = select_detection_batch("hybrid", 3, COPIES_UNCERTAINTY, embeddings=COPIES_EMBEDDINGS)
    assert 5 in spread.tolist()
    # A copy of an image already labeled is a duplicate too.
    later, _ = select_detection_batch(
        "distinct", 2, COPIES_UNCERTAINTY, embeddings=COPIES_EMBEDDINGS, labeled_embeddings=[[0.0005, 0.0005]]
    )
    assert later.tolist() == [3, 4]


def test_distinct_fills_the_budget_with_duplicates_and_never_picks_one_twice():
    rng = np.random.default_rng(0)
    uncertainty = rng.random(40)
    embeddings = np.repeat(rng.normal(size=(4, 8)), 10, axis=0)  # 4 images, each 10 times
    for k in (0, 1, 4, 7, 40):
        picks, _ = select_detection_batch("distinct", k, uncertainty, embeddings=embeddings, pool_factor=1)
        assert len(picks) == k and len(set(picks.tolist())) == k and all(0 <= p < 40 for p in picks)
        if k == 40:  # the whole pool ranked: every image once before any copy
            assert len({tuple(row) for row in embeddings[picks[:4]]}) == 4
    same, _ = select_detection_batch("distinct", 5, uncertainty, embeddings=np.zeros((40, 3)))
    assert same.tolist() == np.argsort(-uncertainty, kind="stable")[:5].tolist()
    assert "distinct" in DETECT_STRATEGIES
    with pytest.raises(ValueError, match="strategy 'distinct' needs one embedding per image"):
        select_detection_batch("distinct", 1, uncertainty)


def _predictions(rows: dict[str, list[float]]) -> pa.Table:
    ids = list(rows)
    emb = np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32)
    boxes = [_boxes(scores) for scores in rows.values()]
    confidence = [min(abs(2 * s - 1) for s in scores) if scores else 1.0 for scores in rows.values()]
    return pa.table(
        {
            "record_id": ids,
            "predicted_label": ["disc" if b else None for b in boxes],
            "confidence": pa.array(confidence, pa.float32()),
            "probs": pa.nulls(len(ids), pa.list_(pa.float32())),
            "embedding": pa.array(emb.tolist(), pa.list_(pa.float32())),
            "boxes": pa.array(boxes, BOXES_TYPE),
        },
        schema=PREDICTION_SCHEMA,
    )


def test_plan_next_batch_for_detect_picks_the_images_whose_boxes_are_doubtful():
    scores = {f"sure-{i}": [0.97 + i / 1000, 0.02] for i in range(8)}
    scores.update({"empty": [], "doubt-1": [0.95, 0.45], "doubt-2": [0.6]})
    n = len(scores)
    pool = pa.table({"record_id": list(scores), "kind": ["image"] * n, "image": [b""] * n})
    predictions = _predictions(scores)
    plan = plan_next_batch(pool, set(), {}, budget=2, strategy="margin", predictions=predictions, task="detect")
    assert plan.record_ids == ["doubt-1", "doubt-2"]
    assert plan.priorities == pytest.approx({"doubt-1": 1.0, "doubt-2": 0.8})  # sums 1.0 and 0.8, over the top 1.0
    # auto = distinct once a model exists: the most uncertain first, near-duplicates skipped.
    auto = plan_next_batch(pool, set(), {}, budget=2, predictions=predictions, model_version="m1", task="detect")
    assert auto.record_ids == ["doubt-1", "doubt-2"] and auto.strategy == "distinct"
    assert auto.model_version == "m1" and auto.uses_model and auto.embeddings == "model"
    again = plan_next_batch(pool, {"doubt-1"}, {}, budget=len(scores), predictions=predictions, task="detect")
    assert "doubt-1" not in again.record_ids and len(set(again.record_ids)) == len(scores) - 1
    with pytest.raises(ValueError, match="strategy 'distinct' ranks detections' uncertainty; a classify round"):
        plan_next_batch(pool, set(), {}, budget=1, strategy="distinct", predictions=predictions)
    later = plan_next_batch(pool, {"doubt-1"}, {}, budget=1, strategy="margin", predictions=predictions, task="detect")
    assert later.record_ids == ["doubt-2"]


def test_tasks_carry_the_predicted_rectangles_with_score_and_model_version():
    scores = {"a": [0.9, 0.35, 0.1], "b": [0.2], "c": []}
    predictions = _predictions(scores)
    tasks = build_tasks(
        pa.table({"record_id": ["a", "b", "c"]}),
        {"a": "media/a.png", "b": "media/b.png", "c": "media/c.png"},
        predictions=predictions,
        labels=["disc", "square"],
        model_version="shapes-v0001-m001",
        task="detect",
    )
    first, second, third = (t["predictions"][0] for t in tasks)
    assert first["model_version"] == "shapes-v0001-m001"
    assert first["score"] == pytest.approx(0.3)  # the image's confidence: its most doubtful box (0.35)
    regions = first["result"]
    assert [r["score"] for r in regions] == pytest.approx([0.9, 0.35])  # 0.1 < PREANNOTATION_MIN_SCORE
    assert PREANNOTATION_MIN_SCORE == 0.3
    assert regions[0]["type"] == "rectanglelabels" and regions[0]["value"]["rectanglelabels"] == ["disc"]
    # 4, 8, 8, 6 px on a 64 x 32 image, in percent
    assert regions[0]["value"] == {
        "x": 6.25,
        "y": 25.0,
        "width": 12.5,
        "height": 18.75,
        "rotation": 0,
        "rectanglelabels": ["disc"],
    }
    assert regions[0]["original_width"] == 64 and regions[0]["original_height"] == 32
    assert second["result"] == [] and third["result"] == []  # nothing the model is sure enough of: no region
    with pytest.raises(ValueError, match="record a: predicted box labels \\['disc'\\] are not among \\['square'\\]"):
        build_box_predictions({"a": 1}, predictions, ["square"], "m")
