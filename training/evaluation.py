"""Evaluation metrics over predicted probabilities: confusion matrix, per-class scores, calibration (ECE)."""

from __future__ import annotations

from typing import Any

import numpy as np

# 15 equal-width confidence bins: the setting of Guo et al. 2017, "On Calibration of Modern Neural
# Networks", which most ECE figures in the literature follow.
ECE_BINS = 15


def compute_confusion(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix (num_classes, num_classes): rows are true classes, columns predicted ones.

    targets (N,), preds (N,): integer class indices in [0, num_classes).
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(targets, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def compute_per_class(cm: np.ndarray, labels: list[str]) -> dict[str, dict[str, float | int | None]]:
    """Precision, recall and F1 (each in [0, 1], low = bad; None without support) and support per class."""
    out: dict[str, dict[str, float | int | None]] = {}
    for k, label in enumerate(labels):
        tp = float(cm[k, k])
        support = int(cm[k].sum())
        predicted = float(cm[:, k].sum())
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else (0.0 if support else None)
        )
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return out


def compute_calibration(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error of top-1 confidences, with the reliability table behind it.

    probs (N, K) softmax outputs, targets (N,) class indices. "ece" is in [0, 1]: 0 = confidences match
    accuracy, high = the model is over- (or under-) confident. "bins" lists each non-empty bin's
    [lo, hi), count, mean confidence and accuracy. None for an empty input.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(targets):
        raise ValueError(f"probs must be (N, K) and targets (N,), got {probs.shape} and {targets.shape}")
    if len(probs) == 0:
        return {"ece": None, "bins": [], "n_bins": bins}
    confidence = probs.max(1)
    correct = (probs.argmax(1) == targets).astype(np.float64)
    # Bin i holds confidences in (i/bins, (i+1)/bins]; confidence 0 can only occur with K=0, so clip.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    table = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        conf_b, acc_b = float(confidence[mask].mean()), float(correct[mask].mean())
        ece += n / len(probs) * abs(conf_b - acc_b)
        table.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n, "confidence": conf_b, "accuracy": acc_b})
    return {"ece": ece, "bins": table, "n_bins": bins}
