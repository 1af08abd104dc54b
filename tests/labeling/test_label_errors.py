"""Confident learning: planted label flips on real digit images are found, clean labels mostly left alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_digits

from corpus.schema import PREDICTION_SCHEMA
from labeling.label_errors import (
    compute_confident_joint,
    compute_out_of_sample_probs,
    find_label_issues,
    flag_label_errors,
    get_self_confidence_scores,
)


def _flipped_digits(n_flips: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x, y = digits.data[:900], digits.target[:900]
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(y), n_flips, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, n_flips)) % 10  # planted: a different class
    return x, noisy, flipped


def test_planted_flips_are_found_with_high_precision_and_recall() -> None:
    x, noisy, flipped = _flipped_digits()
    probs = compute_out_of_sample_probs(x, noisy, seed=0)
    assert probs.shape == (900, 10) and np.allclose(probs.sum(axis=1), 1.0)
    issues = find_label_issues(noisy, probs)
    found = set(np.flatnonzero(issues).tolist())
    planted = set(flipped.tolist())
    recall = len(found & planted) / len(planted)
    precision = len(found & planted) / max(len(found), 1)
    assert recall > 0.8 and precision > 0.7
    scores = get_self_confidence_scores(noisy, probs)
    assert scores[flipped].mean() < scores[np.setdiff1d(np.arange(900), flipped)].mean()
    joint = compute_confident_joint(noisy, probs)
    assert joint.sum() == pytest.approx(900) and np.trace(joint) > 0.85 * 900
    loose = find_label_issues(noisy, probs, filter_by="confident_joint")
    assert len(set(np.flatnonzero(loose).tolist()) & planted) >= len(found & planted) - 5


def test_clean_labels_give_few_flags_and_bad_inputs_are_rejected() -> None:
    x, _, _ = _flipped_digits(n_flips=1)
    y = load_digits().target[:900]
    issues = find_label_issues(y, compute_out_of_sample_probs(x, y))
    assert issues.sum() < 0.04 * len(y)  # a few truly ambiguous digits at most
    with pytest.raises(ValueError, match="integers"):
        find_label_issues(np.array([0, 3]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="filter_by"):
        find_label_issues(np.array([0, 1]), np.eye(2), filter_by="other")
    with pytest.raises(ValueError, match="at least 2"):
        compute_out_of_sample_probs(np.zeros((3, 2)), np.array([0, 0, 1]))


def test_flag_label_errors_on_release_tables_gives_reasons_and_suggestions() -> None:
    x, noisy, flipped = _flipped_digits(n_flips=40, seed=1)
    classes = [str(d) for d in range(10)]
    ids = [f"r{i}" for i in range(len(noisy))]
    labeled = pa.table({"record_id": ids, "label": [classes[c] for c in noisy]})
    predictions = pa.Table.from_pylist(
        [
            {"record_id": rid, "predicted_label": None, "confidence": None, "probs": None, "embedding": row.tolist()}
            for rid, row in zip(ids, x, strict=True)
        ],
        schema=PREDICTION_SCHEMA,
    )
    flags = flag_label_errors(labeled, predictions, classes)
    truth = load_digits().target[:900]
    flagged = {int(r["record_id"][1:]): r for r in flags.to_pylist()}
    assert len(set(flagged) & set(flipped.tolist())) >= 30
    assert all(r["reason"] == "confident_learning" for r in flagged.values())
    right = [i for i in set(flagged) & set(flipped.tolist()) if flagged[i]["suggested_label"] == str(truth[i])]
    assert len(right) >= 25  # the suggestion is usually the true class
    confs = flags.column("self_confidence").to_pylist()
    assert confs == sorted(confs)
