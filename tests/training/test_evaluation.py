"""Tests for evaluation metrics: planted miscalibration and mislabels are measured as expected."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import compute_calibration, compute_confusion, compute_per_class


def test_ece_is_zero_when_calibrated_and_large_when_overconfident():
    targets = np.array([0] * 10 + [1] * 10)
    # Calibrated: 80% confident and 80% right.
    calibrated = np.array([[0.8, 0.2]] * 10 + [[0.2, 0.8]] * 10)
    targets_cal = np.array([0] * 8 + [1] * 2 + [1] * 8 + [0] * 2)
    assert compute_calibration(calibrated, targets_cal)["ece"] == pytest.approx(0.0, abs=1e-9)
    # Planted overconfidence: 99% sure and only half right.
    overconfident = np.array([[0.99, 0.01]] * 20)
    result = compute_calibration(overconfident, targets)
    assert result["ece"] == pytest.approx(0.49)
    (only_bin,) = result["bins"]
    assert only_bin["count"] == 20 and only_bin["lo"] == pytest.approx(14 / 15) and only_bin["accuracy"] == 0.5
    assert compute_calibration(np.zeros((0, 2)), np.zeros(0))["ece"] is None
    with pytest.raises(ValueError, match=r"probs must be \(N, K\)"):
        compute_calibration(np.zeros(3), np.zeros(3))


def test_planted_mislabels_show_in_confusion_and_per_class_scores():
    # 10 of each class; 4 "b" items mislabeled (predicted) as "a".
    targets = np.array([0] * 10 + [1] * 10 + [2] * 10)
    preds = targets.copy()
    preds[10:14] = 0
    cm = compute_confusion(targets, preds, 3)
    assert cm[1, 0] == 4 and cm.sum() == 30
    per = compute_per_class(cm, ["a", "b", "c"])
    assert per["b"]["recall"] == pytest.approx(0.6) and per["b"]["precision"] == 1.0
    assert per["a"]["precision"] == pytest.approx(10 / 14) and per["a"]["recall"] == 1.0
    assert per["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 10}
    empty = compute_per_class(np.zeros((2, 2), np.int64), ["x", "y"])
    assert empty["x"] == {"precision": None, "recall": None, "f1": None, "support": 0}
