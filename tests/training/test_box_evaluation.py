"""mAP@0.5 and mAP@[.5:.95]: hand-computed cases, and pycocotools' COCOeval on the same random boxes."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from corpus.boxes import make_box_set
from training.box_evaluation import compute_average_precision, compute_map

GOLD = make_box_set([[0, 0, 10, 10]], ["cat"])


def _predicted(xyxy: list, labels: list[str], scores: list[float]):
    return make_box_set(xyxy, labels, scores)


def test_a_perfect_box_scores_one_at_every_threshold() -> None:
    result = compute_map([_predicted([[0, 0, 10, 10]], ["cat"], [0.9])], [GOLD])
    assert (result["map_50"], result["map_50_95"]) == (1.0, 1.0)


def test_a_false_positive_ranked_first_halves_precision() -> None:
    # Ranked: a miss (precision 0, recall 0), then the hit (precision 1/2, recall 1). The envelope reads 1/2
    # at every one of the 101 recall points.
    predicted = _predicted([[50, 50, 60, 60], [0, 0, 10, 10]], ["cat", "cat"], [0.9, 0.8])
    assert compute_map([predicted], [GOLD])["map_50"] == pytest.approx(0.5)


def test_half_the_objects_found_reads_precision_one_up_to_recall_one_half() -> None:
    # Recall points 0.00 .. 0.50 (51 of 101) read precision 1, the rest 0.
    gold = make_box_set([[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "cat"])
    assert compute_map([_predicted([[0, 0, 10, 10]], ["cat"], [0.9])], [gold])["map_50"] == pytest.approx(51 / 101)


def test_a_loose_box_counts_only_at_thresholds_below_its_iou() -> None:
    # IoU 67.5 / 100 = 0.675: a hit at .50 .55 .60 .65, a miss at .70 .. .95: 4 of 10 thresholds.
    ap = compute_average_precision([_predicted([[0, 0, 10, 6.75]], ["cat"], [0.9])], [GOLD])["cat"]
    assert ap.tolist() == [1.0] * 4 + [0.0] * 6
    assert compute_map([_predicted([[0, 0, 10, 6.75]], ["cat"], [0.9])], [GOLD])["map_50_95"] == pytest.approx(0.4)


def test_a_duplicate_is_a_false_positive_and_labels_are_averaged() -> None:
    # cat: hit then duplicate: precision 1 at recall 1 -> AP 1 (the duplicate comes after full recall).
    # dog: its truth has no prediction -> AP 0. bird: predicted but no truth -> not averaged.
    gold = make_box_set([[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "dog"])
    predicted = _predicted([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 50, 50]], ["cat", "cat", "bird"], [0.9, 0.8, 0.7])
    result = compute_map([predicted], [gold])
    assert result["per_label"] == {"cat": {"ap_50": 1.0, "ap_50_95": 1.0}, "dog": {"ap_50": 0.0, "ap_50_95": 0.0}}
    assert result["map_50"] == 0.5
    # The duplicate ranked first of two cat objects: hit, duplicate (FP), hit -> precisions 1, 1/2, 2/3; the
    # envelope is 1 up to recall 1/2 (51 points) and 2/3 beyond (50 points).
    two = make_box_set([[0, 0, 10, 10], [20, 20, 30, 30]], ["cat", "cat"])
    ranked = _predicted([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], ["cat"] * 3, [0.9, 0.8, 0.7])
    assert compute_map([ranked], [two])["map_50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert compute_map([make_box_set([], [])], [make_box_set([], [])])["map_50"] is None


def _random_images(seed: int, n_images: int = 25):
    rng = np.random.default_rng(seed)
    truth, predictions = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, size=(n, 2))
        gold = np.concatenate([xy, xy + rng.uniform(5, 40, size=(n, 2))], axis=1)
        labels = rng.choice(["cat", "dog", "bird"], size=n).tolist()
        keep = rng.random(n) > 0.2
        jittered = gold[keep] + rng.normal(0, 3, size=(int(keep.sum()), 4))
        extra_xy = rng.uniform(0, 80, size=(int(rng.integers(0, 3)), 2))
        extra = np.concatenate([extra_xy, extra_xy + 15], axis=1)
        boxes = np.concatenate([jittered, extra])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        flipped = [label if rng.random() > 0.1 else "dog" for label in np.array(labels, dtype=object)[keep]]
        predicted_labels = flipped + rng.choice(["cat", "dog", "bird"], size=len(extra)).tolist()
        truth.append(make_box_set(gold, labels))
        predictions.append(make_box_set(boxes, predicted_labels, rng.random(len(boxes))))
    return truth, predictions


def _cocoeval(truth, predictions) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = sorted({str(label) for image in truth for label in image.labels})
    ids = {name: i + 1 for i, name in enumerate(names)}
    gold, found = [], []
    for image_id, (true, mine) in enumerate(zip(truth, predictions, strict=True), start=1):
        for (x0, y0, x1, y1), label in zip(true.xyxy.tolist(), true.labels, strict=True):
            box = [x0, y0, x1 - x0, y1 - y0]
            gold.append({"id": len(gold) + 1, "image_id": image_id, "category_id": ids[label], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
        for (x0, y0, x1, y1), label, score in zip(mine.xyxy.tolist(), mine.labels, mine.scores, strict=True):
            if label in ids:
                found.append({"image_id": image_id, "category_id": ids[label], "bbox": [x0, y0, x1 - x0, y1 - y0],
                              "score": float(score)})  # fmt: skip
    coco = COCO()
    coco.dataset = {"images": [{"id": i + 1} for i in range(len(truth))], "annotations": gold,
                    "categories": [{"id": i, "name": n} for n, i in ids.items()]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(found), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1]), float(evaluation.stats[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_figures_as_pycocotools(seed: int) -> None:
    truth, predictions = _random_images(seed)
    mine = compute_map(predictions, truth)
    ap50, ap = _cocoeval(truth, predictions)
    assert mine["map_50"] == pytest.approx(ap50, abs=1e-9)
    assert mine["map_50_95"] == pytest.approx(ap, abs=1e-9)
