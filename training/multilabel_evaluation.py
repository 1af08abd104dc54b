"""Multi-label evaluation: per-label precision, recall, F1 and average precision; micro and macro F1; mAP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def compute_micro_f1(predicted: np.ndarray, truth: np.ndarray) -> float | None:
    """F1 over every (item, label) decision pooled, in [0, 1] (low = bad); None when nothing is present in
    either. `predicted`, `truth`: (N, K) booleans."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    tp = float((predicted & truth).sum())
    denominator = float(predicted.sum() + truth.sum())
    return 2.0 * tp / denominator if denominator else None


def compute_average_precision(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Average precision of one label (the area under its precision-recall curve, as scikit-learn's
    average_precision_score: sum over thresholds of (R_n - R_{n-1}) P_n), in [0, 1]; None without a positive."""
    from sklearn.metrics import average_precision_score

    truth = np.asarray(truth, bool)
    if not truth.any():
        return None
    return float(average_precision_score(truth, np.asarray(scores, np.float64)))


def compute_multilabel_metrics(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], *, threshold: float = 0.5
) -> dict[str, Any]:
    """Test metrics of sigmoid outputs `probs` (N, K) against 0/1 `targets` (N, K), labels in `labels` order.

    Returns {"per_label_metrics" (label -> precision, recall, f1 (None without support or predictions, as in
    training.evaluation), average_precision, support), "test_micro_f1", "test_macro_f1" (mean of the
    per-label F1s that exist), "test_map" (mean average precision over labels with a positive),
    "test_exact_match" (share of items whose whole predicted set is right), "threshold"}.
    """
    probs = np.asarray(probs, np.float64).reshape(-1, len(labels))
    truth = np.asarray(targets, np.float64).reshape(-1, len(labels)) >= 0.5
    predicted = probs >= threshold
    per_label: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(labels):
        tp = int((predicted[:, k] & truth[:, k]).sum())
        n_pred, support = int(predicted[:, k].sum()), int(truth[:, k].sum())
        precision = tp / n_pred if n_pred else None
        recall = tp / support if support else None
        f1 = 2 * tp / (n_pred + support) if support else None
        per_label[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "average_precision": compute_average_precision(probs[:, k], truth[:, k]),
            "support": support,
        }
    f1s = [m["f1"] for m in per_label.values() if m["f1"] is not None]
    aps = [m["average_precision"] for m in per_label.values() if m["average_precision"] is not None]
    return {
        "per_label_metrics": per_label,
        "test_micro_f1": compute_micro_f1(predicted, truth),
        "test_macro_f1": float(np.mean(f1s)) if f1s else None,
        "test_map": float(np.mean(aps)) if aps else None,
        "test_exact_match": float((predicted == truth).all(1).mean()) if len(probs) else None,
        "threshold": threshold,
    }


def score_label_sets(
    truth: Sequence[Sequence[str] | None], probs: np.ndarray, labels: Sequence[str], *, threshold: float = 0.5
) -> dict[str, Any]:
    """A multi-label model's scores on labeled items (the fixed eval set): sigmoid outputs `probs` (N, K) in
    `labels` order against each item's true label set `truth` (N,), every figure in [0, 1], low = bad.

    A true label the model lacks (absent from `labels`, e.g. first labeled after it was trained) counts as
    never predicted: missed for recall and F1, AP 0, and its items are never an exact match, so a model
    trained on fewer labels is not flattered; "unknown_label" counts those (item, label) pairs and
    "lacking_labels" names them. Returns {"n", "exact_match", "micro_f1", "macro_f1", "map",
    "unknown_label", "lacking_labels", "per_label_metrics", "threshold"} (compute_multilabel_metrics' figures
    over `labels` plus the lacking labels)."""
    known = list(labels)
    lacking = sorted({name for chosen in truth for name in chosen or []} - set(known))
    space = known + lacking
    index = {name: k for k, name in enumerate(space)}
    full = np.zeros((len(truth), len(space)))
    full[:, : len(known)] = np.asarray(probs, np.float64).reshape(-1, len(known))
    targets = np.zeros_like(full)
    for i, chosen in enumerate(truth):
        targets[i, [index[name] for name in chosen or []]] = 1.0
    m = compute_multilabel_metrics(full, targets, space, threshold=threshold)
    per_label = m["per_label_metrics"]
    for name in lacking:  # a constant 0 score would get AP = the label's prevalence; the model never ranks it
        per_label[name]["average_precision"] = 0.0
    aps = [p["average_precision"] for p in per_label.values() if p["average_precision"] is not None]
    return {
        "n": len(truth),
        "exact_match": m["test_exact_match"],
        "micro_f1": m["test_micro_f1"],
        "macro_f1": m["test_macro_f1"],
        "map": float(np.mean(aps)) if aps else None,
        "unknown_label": int(targets[:, len(known) :].sum()),
        "lacking_labels": lacking,
        "per_label_metrics": per_label,
        "threshold": threshold,
    }
