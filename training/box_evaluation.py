"""Detection metrics: COCO-style average precision (101-point interpolation) at one or many IoU thresholds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from corpus.boxes import BoxSet, compute_iou

# COCO's evaluation protocol (Lin et al. 2014, "Microsoft COCO: Common Objects in Context"; pycocotools'
# COCOeval defaults): IoU thresholds .50:.05:.95, precision read at 101 recall points, at most 100 boxes
# per image and class.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


def _match_image(detections: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True positives (T, D) of one image's detections (D, 4), best score first, against its truth (G, 4):
    each detection in turn takes the unmatched truth box it overlaps most at IoU >= the threshold (COCOeval)."""
    hits = np.zeros((len(thresholds), len(detections)), dtype=bool)
    if not len(detections) or not len(truth):
        return hits
    iou = compute_iou(detections, truth)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(truth), dtype=bool)
        for d in range(len(detections)):
            candidates = np.where(~taken & (iou[d] >= threshold), iou[d], -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= 0:
                taken[best] = hits[t, d] = True
    return hits


def _interpolated_precision(hits: np.ndarray, n_truth: int) -> float:
    """COCO's AP of one class at one threshold: hits (D,) in score order over all images, n_truth > 0."""
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    # The precision envelope: at each recall, the best precision reachable at that recall or beyond.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    read = np.zeros(len(RECALL_POINTS))
    valid = at < len(precision)
    read[valid] = precision[at[valid]]
    return float(read.mean())


def compute_average_precision(
    predictions: Sequence[BoxSet],
    truth: Sequence[BoxSet],
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    max_detections: int = MAX_DETECTIONS,
) -> dict[str, np.ndarray]:
    """AP per label (T,) in [0, 1] (low = bad) at each IoU threshold, for the labels with truth boxes, over
    images given as predictions[i] (scored boxes) and truth[i] (the true boxes of the same image)."""
    if len(predictions) != len(truth):
        raise ValueError(f"need one prediction set per image: {len(predictions)} predictions, {len(truth)} images")
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    labels = sorted({str(label) for image in truth for label in image.labels})
    out = {}
    for label in labels:
        scores, hits, n_truth = [], [], 0
        for predicted, true in zip(predictions, truth, strict=True):
            gold = true.xyxy[true.labels == label]
            mine = predicted.labels == label
            order = np.argsort(-predicted.scores[mine], kind="mergesort")[:max_detections]
            boxes = predicted.xyxy[mine][order]
            scores.append(predicted.scores[mine][order])
            hits.append(_match_image(boxes, gold, thresholds))
            n_truth += len(gold)
        all_scores = np.concatenate(scores)
        all_hits = np.concatenate(hits, axis=1)
        order = np.argsort(-all_scores, kind="mergesort")
        out[label] = np.array([_interpolated_precision(row[order], n_truth) for row in all_hits])
    return out


def compute_map(predictions: Sequence[BoxSet], truth: Sequence[BoxSet]) -> dict:
    """mAP@0.5 and mAP@[.5:.95] (COCO's AP and AP50, each in [0, 1], low = bad; None without truth boxes)
    and both per label, averaged over the labels that have truth boxes."""
    per_label = compute_average_precision(predictions, truth)
    if not per_label:
        return {"map_50": None, "map_50_95": None, "per_label": {}}
    return {
        "map_50": float(np.mean([ap[0] for ap in per_label.values()])),
        "map_50_95": float(np.mean([ap.mean() for ap in per_label.values()])),
        "per_label": {label: {"ap_50": float(ap[0]), "ap_50_95": float(ap.mean())} for label, ap in per_label.items()},
    }
